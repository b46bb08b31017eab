"""The previews of drain-default, fill-gaps and create-ahead never run the DEFAULT partition's
code: planning any read of it folds the constant parts of its indexes' predicates, so an
IMMUTABLE function there would run with the operator's rights during `--dry-run`, `--sql` or
the console's preview. drain-default and fill-gaps refuse the preview in one line naming the
function and the index; create-ahead (which `maintain` runs for every table) skips the read and
says so. Their `--apply` reads the DEFAULT as the applying role, and still works.

The planted function counts its calls in a sequence (nextval is never rolled back), so every
call is seen, whichever session made it."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config
from tui.core.plans.kind import PlanKindError
from tui.core.plans.registry import kind_named

from ...test_maintain import config
from ..scenarios import (
    DEFAULT,
    LIST_DEFAULT,
    MOVE_SCENARIOS,
    SCHEMA,
    TABLE,
    default_rows,
    ident,
    leftovers,
    list_spec,
    spec,
    with_list_and_null,
)
from .test_fill_gaps import _gap_above_the_hash_partition
from .test_lifecycle import _plain_weeks_with_default_rows
from .test_remedies import cli

FN = "public.traced(integer)"
IX = "traced ix"


def plant(conn: psycopg.Connection, table: sql.Identifier, column: str = "id") -> None:
    """An index on `table` whose predicate calls an IMMUTABLE function counting its calls."""
    conn.execute("DROP SEQUENCE IF EXISTS public.code_calls")
    conn.execute("CREATE SEQUENCE public.code_calls")
    conn.execute("CREATE OR REPLACE FUNCTION public.traced(x integer) RETURNS integer"
                 " LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN"
                 " PERFORM pg_catalog.nextval('public.code_calls'); RETURN x; END $$")
    conn.execute(sql.SQL("CREATE INDEX {} ON {} ({}) WHERE {} > public.traced(-1000000)").format(
        sql.Identifier(IX), table, sql.Identifier(column), sql.Identifier(column)))


def calls(db) -> int:
    last, called = db.query("SELECT last_value, is_called FROM public.code_calls")[0]
    return int(last) if called else 0


def refused(capsys, db, kind: str, table: str, flag: str) -> str:
    status, out, err = cli(capsys, kind, table, flag, "-d", db.dsn)
    assert status == 2 and len(err.strip().splitlines()) == 1, (out, err)
    assert f'would run {FN} (index "{IX}")' in err, err
    assert f"`pgparts {kind} ... --apply` reads it (as the applying role)" in err, err
    return err


def test_drain_default_preview_refuses_a_default_whose_reads_run_its_code(db, capsys):
    with db.connect() as conn:
        MOVE_SCENARIOS["drain_default"].build(conn, db.dsn)
        plant(conn, ident(DEFAULT))
    before = calls(db)
    assert before > 0  # the trap is live: building the index ran it
    for flag in ("--dry-run", "--sql"):
        refused(capsys, db, "drain-default", spec(), flag)
    # the console's preview builds the plan as a preview too
    kind = kind_named("drain_default")
    with db.connect() as conn, pytest.raises(PlanKindError, match="public.traced"):
        kind.build(conn, load_forest(conn), None, kind.request({}, spec()), Config())
    assert calls(db) == before
    status, out, err = cli(capsys, "drain-default", spec(), "--apply", "--yes", "-d", db.dsn)
    assert status == 0, (out, err)
    assert calls(db) > before  # the apply read the DEFAULT, as the applying role
    with db.connect() as conn:
        assert default_rows(conn) == 0 and leftovers(conn) == []


def test_drain_default_preview_of_a_list_default_refuses_too(db, capsys):
    with db.connect() as conn:
        with_list_and_null(conn, db.dsn)
        plant(conn, ident(LIST_DEFAULT))
    before = calls(db)
    refused(capsys, db, "drain-default", list_spec(), "--dry-run")
    assert calls(db) == before


def test_fill_gaps_preview_refuses_and_the_apply_fills_the_gap(db, capsys):
    scenario = MOVE_SCENARIOS["fill_gaps"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        plant(conn, ident(DEFAULT))
    before = calls(db)
    for flag in ("--dry-run", "--sql"):
        refused(capsys, db, "fill-gaps", spec(), flag)
    # `fix` previews the same plan: the refusal is its note, the other fixes go on
    status, out, err = cli(capsys, "fix", spec(), "--only", "range_gap", "--dry-run",
                           "-d", db.dsn)
    assert status == 0 and f"fill_gaps on {spec()}: reading" in err, (out, err)
    assert calls(db) == before
    status, out, err = cli(capsys, "fill-gaps", spec(), "--apply", "--yes", "-d", db.dsn)
    assert status == 0, (out, err)
    assert calls(db) > before
    with db.connect() as conn:
        assert scenario.fixed(conn) and leftovers(conn) == []


def test_fill_gaps_preview_checks_the_partitions_of_a_partitioned_default(db, capsys):
    """A sub-partitioned DEFAULT is read through its leaves: their code counts too."""
    with db.connect() as conn:
        _gap_above_the_hash_partition(conn, rows_in_hole=False, hash_default=True)
        plant(conn, ident(f"{DEFAULT} h1"))
    before = calls(db)
    refused(capsys, db, "fill-gaps", spec(), "--dry-run")
    assert calls(db) == before


def test_create_ahead_preview_skips_the_default_and_maintain_goes_on(db, capsys, tmp_path):
    with db.connect() as conn:
        _nxt, n, _digest = _plain_weeks_with_default_rows(conn)
        plant(conn, ident('dé f"ault'))
    before = calls(db)
    for flag in ("--dry-run", "--sql"):
        status, out, err = cli(capsys, "create-ahead", spec(), "--count", "3", flag,
                               "-d", db.dsn)
        assert status == 0, err
        assert "did not check the DEFAULT partition" in out, out
        assert f"reading it would run {FN}" in out, out
    kind = kind_named("create_ahead")
    with db.connect() as conn:  # the console's preview
        plan = kind.build(conn, load_forest(conn), None,
                          kind.request({"count": 3}, spec()), Config())
    assert plan.steps and "not_checked" in plan.details
    cfg = config(tmp_path, f"[policy.{json.dumps(spec())}]\npremake = 3\n")
    status, out, err = cli(capsys, "maintain", "--dry-run", "--config", cfg, "-d", db.dsn)
    assert status == 0, (out, err)
    assert "create_ahead: planned: would create 3 partitions" in out, out
    assert "did not check the DEFAULT partition" in out, out
    assert calls(db) == before
    # the apply reads the DEFAULT (as the applying role) and moves its rows of the new weeks
    status, out, err = cli(capsys, "create-ahead", spec(), "--count", "3", "--apply", "--yes",
                           "-d", db.dsn)
    assert status == 0, (out, err)
    assert "(the swap)" in out + err
    assert calls(db) > before
    with db.connect() as conn:
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            ident(TABLE))).fetchone()[0] == n
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            ident('dé f"ault'))).fetchone()[0] == 20
        assert leftovers(conn) == []


def test_a_check_constraint_counts_when_the_database_turns_constraint_exclusion_on(db, capsys):
    """With `constraint_exclusion = on` (here the database's setting), planning a read folds
    the CHECK constraints' constant parts too (measured): a CHECK calling the function is then
    refused like an index predicate; with the default setting it runs in no read."""
    with db.connect() as conn:
        MOVE_SCENARIOS["drain_default"].build(conn, db.dsn)
        plant(conn, ident(DEFAULT))
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(SCHEMA, IX)))
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT traced CHECK"
                             " (id > public.traced(-1000000))").format(ident(DEFAULT)))
    before = calls(db)
    status, out, err = cli(capsys, "drain-default", spec(), "--dry-run", "-d", db.dsn)
    assert status == 0, err  # planning ran no CHECK
    assert calls(db) == before
    db.execute(sql.SQL("ALTER DATABASE {} SET constraint_exclusion = on").format(
        sql.Identifier(db.name)))
    status, out, err = cli(capsys, "drain-default", spec(), "--dry-run", "-d", db.dsn)
    assert status == 2 and f"would run {FN} (constraint traced)" in err, (out, err)
    assert calls(db) == before
