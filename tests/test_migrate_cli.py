"""`pgparts migrate`: bad input, dry run, SQL, apply (stopped by a group over 60 with nothing
changed; every stage run unattended), status, abort; the demo's legacy.payment end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tui.cli import main
from tui.core.migrate.migration import Choices, prepare

from .migrate_stages import foreign_key_entries
from .migrate_support import PLAIN, build_legacy
from .test_migrate_stages import _build, _choices, _rows, _run_to, catalog_dump

n = PLAIN
REPO = Path(__file__).resolve().parent.parent
ARGS = ("legacy.payment", "--by", "pay_ts", "--key", "pdm_id,pay_ts", "--tiebreak", "tracer",
        "--interval", "year")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _one_line(result: tuple[int, str, str], fragment: str) -> None:
    status, _out, err = result
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and fragment in lines[0], err


def test_bad_input_one_line_exit_2(db18, capsys):
    with db18.connect() as conn:
        build_legacy(conn, n, rows=100)
        conn.commit()
    d = ("-d", db18.dsn)
    _one_line(run_cli(capsys, "migrate", "legacy.payment", "--dry-run", *d), "needs --by")
    _one_line(run_cli(capsys, "migrate", "legacy.payment", "--by", "pay_ts", "--key", "pay_ts",
                      "--dry-run", *d), "choose the layout")
    _one_line(run_cli(capsys, "migrate", *ARGS, *d), "say what to do")
    _one_line(run_cli(capsys, "migrate", "legacy.nope", *ARGS[1:], "--dry-run", *d), "no table")
    _one_line(run_cli(capsys, "migrate", *ARGS[:2], "amount", *ARGS[3:], "--dry-run", *d),
              "partition by a timestamp")
    _one_line(run_cli(capsys, "migrate", *ARGS[:4], "pdm_id", *ARGS[5:], "--dry-run", *d),
              "must hold the partition column")
    _one_line(run_cli(capsys, "migrate", "legacy.payment", "--resume", "--dry-run", *d),
              "no migration of legacy.payment is recorded")
    # status of a table that is not there, or that is partitioned without a migration
    _one_line(run_cli(capsys, "migrate", "legacy.nosuch", "status", *d),
              "no table legacy.nosuch")
    _one_line(run_cli(capsys, "migrate", "legacy.nosuch", "status", "--json", *d),
              "no table legacy.nosuch")
    db18.execute("CREATE TABLE legacy.parted (t int) PARTITION BY RANGE (t)")
    _one_line(run_cli(capsys, "migrate", "legacy.parted", "status", *d),
              "legacy.parted is already partitioned, and no migration of it is recorded")
    _one_line(run_cli(capsys, "migrate", *ARGS, "--layout", "/nonexistent.toml", "--dry-run",
                      *d), "cannot read")
    # stage 8 moves colliding rows within their minute by the tie-break: it needs both
    _one_line(run_cli(capsys, "migrate", *ARGS[:5], *ARGS[7:], "--insert-trigger", "--dry-run",
                      *d), "need a timestamp partition column and a tie-break")
    _one_line(run_cli(capsys, "migrate", "legacy.payment", "--abort", "--insert-trigger",
                      "--dry-run", *d), "chosen with a new migration")
    # a registry other roles may write to is never read: nothing can tell where it stands
    db18.execute("CREATE SCHEMA pgparts; GRANT CREATE ON SCHEMA pgparts TO PUBLIC")
    _one_line(run_cli(capsys, "migrate", "legacy.payment", "status", *d),
              "refuses to use its registry: other roles may create objects in schema pgparts")
    _one_line(run_cli(capsys, "migrate", *ARGS, "--apply", "--yes", *d),
              "refuses to use its registry")


def test_over_60_stops_apply_with_nothing_changed(db18, capsys):
    _build(db18, n, over_60=True)
    before = _rows(db18, n.ident(n.table), n)
    dump = catalog_dump(db18, n.schema, n.table)
    status, _out, err = run_cli(capsys, "migrate", *ARGS, "--apply", "--yes", "-d", db18.dsn)
    assert status == 1 and "more than 60 rows in one minute" in err
    assert "pgparts:   pdm_id = 7, minute 2019-07-20 00:00 UTC: 65 rows" in err, err
    assert _rows(db18, n.ident(n.table), n) == before
    assert catalog_dump(db18, n.schema, n.table) == dump
    assert db18.query("SELECT to_regclass('pgparts.plan_objects')") == [(None,)]


def test_dry_run_sql_apply_status_abort(db18, capsys):
    _build(db18, n)
    d = ("-d", db18.dsn)
    dump = catalog_dump(db18, n.schema, n.table)
    status, out, _ = run_cli(capsys, "migrate", *ARGS, "--dry-run", *d)
    assert status == 0
    for number in (1, 2, 3, 4, 5, 6, 7, 9):
        assert f"== stage {number}:" in out
    # stage 8 is offered, not imposed
    assert "== stage 8:" not in out and "not chosen (--insert-trigger)" in out
    assert "not available" not in out and "duplicates by error:" in out
    assert "legacy.payment_bonus.payment_bonus_pay_id_fkey" in out
    assert "views: legacy.payment_daily" in out and "(serial of pay_id)" in out
    status, out, _ = run_cli(capsys, "migrate", *ARGS, "--insert-trigger", "--dry-run", "--json",
                             *d)
    doc = json.loads(out)
    assert [s["name"] for s in doc["stages"]] == [
        "preflight", "duplicates", "collisions", "layout", "build", "copy", "dependencies",
        "trigger", "finish"]
    # stages 7-9 read their steps from the new table: before Build they say so
    assert [s["unavailable"] is None for s in doc["stages"]] == [True] * 6 + [False] * 3
    assert "shown once Build (stage 5) has run" in doc["stages"][6]["unavailable"]
    assert doc["spec"]["key"] == ["pdm_id", "pay_ts"] and doc["spec"]["surrogate"] == "pay_id"
    assert doc["spec"]["insert_trigger"] is True
    status, out, _ = run_cli(capsys, "migrate", *ARGS, "--sql", *d)
    assert status == 0 and 'PARTITION BY RANGE ("pay_ts")' in out.replace("pay_ts", '"pay_ts"'
                                                                         ).replace('""', '"')
    assert "INSERT INTO" in out and "ALTER TABLE" in out
    assert catalog_dump(db18, n.schema, n.table) == dump  # dry run and SQL changed nothing

    # stopped after stage 7 (the API runs the stages one by one), then aborted from the CLI
    with db18.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
    assert _run_to(db18, spec, "dependencies").ok
    status, out, _ = run_cli(capsys, "migrate", "legacy.payment", "status", "--json", *d)
    doc = json.loads(out)
    assert (doc["last_stage"], doc["next_stage"], doc["insert_trigger"]) == (
        "dependencies", "finish", False)
    assert [s["done"] for s in doc["stages"]] == [False] + [True] * 6 + [False] * 2
    assert [s["chosen"] for s in doc["stages"]] == [True] * 7 + [False, True]
    status, out, _ = run_cli(capsys, "migrate", "legacy.payment", "status", *d)
    assert status == 0 and "last stage done: dependencies" in out and "not chosen" in out
    _one_line(run_cli(capsys, "migrate", *ARGS, "--dry-run", *d), "is recorded")
    _one_line(run_cli(capsys, "migrate", "legacy.payment", "--resume", "--insert-trigger",
                      "--dry-run", *d), "cannot change")
    status, _out, err = run_cli(capsys, "migrate", "legacy.payment", "--abort", "--apply",
                                "--yes", *d)
    assert status == 0, err
    assert catalog_dump(db18, n.schema, n.table) == dump
    status, out, _ = run_cli(capsys, "migrate", "legacy.payment", "status", *d)
    assert "no migration recorded" in out

    # unattended, through Finish: the original is dropped, nothing is left to abort
    rows = _rows(db18, n.ident(n.table), n)
    status, _out, err = run_cli(capsys, "migrate", *ARGS, "--apply", "--yes", *d)
    assert status == 0, err
    assert "stage 9: finish" in err and "stage 8: " not in err
    assert _rows(db18, n.ident(n.table), n) == rows
    assert db18.query("SELECT to_regclass('legacy.payment_premigration')") == [(None,)]
    status, out, _ = run_cli(capsys, "migrate", "legacy.payment", "status", "--json", *d)
    doc = json.loads(out)
    assert (doc["last_stage"], doc["next_stage"], doc["problems"]) == ("finish", None, [])
    _one_line(run_cli(capsys, "migrate", "legacy.payment", "--abort", "--apply", "--yes", *d),
              "the original table was dropped")
    status, _out, err = run_cli(capsys, "migrate", "legacy.payment", "--resume", "--apply",
                                "--yes", *d)
    assert status == 0, err  # nothing left to do


def test_writers_refused_or_waited_for(db18, capsys):
    _build(db18, n)
    d = ("-d", db18.dsn)
    with psycopg.connect(db18.dsn) as writer:  # a transaction left open
        writer.execute("UPDATE legacy.payment SET amount = amount WHERE pay_id = 1")
        status, _out, err = run_cli(capsys, "migrate", *ARGS, "--apply", "--yes", "--wait",
                                    "0.5", *d)
        assert status == 1 and "still write to legacy.payment after 0.5 s" in err
        status, _out, err = run_cli(capsys, "migrate", *ARGS, "--apply", "--yes", *d)
        assert status == 1 and "1 session(s) are writing to legacy.payment" in err
        writer.rollback()
    assert db18.query("SELECT to_regclass('pgparts.plan_objects')") == [(None,)]


def test_layout_file(db18, capsys, tmp_path):
    _build(db18, n)
    layout = tmp_path / "layout.toml"
    layout.write_text(
        'column = "pay_ts"\n'
        '[[partitions]]\nname = "p_old"\nfrom = "MINVALUE"\nto = "2020-01-01 00:00:00+00"\n'
        '[[partitions]]\nname = "p_new"\nfrom = "2020-01-01 00:00:00+00"\n'
        'to = "2030-01-01 00:00:00+00"\n'
        '[[partitions]]\nname = "p_default"\ndefault = true\n', encoding="utf-8")
    status, out, _ = run_cli(capsys, "migrate", *ARGS[:7], "--layout", str(layout),
                             "--dry-run", "--json", "-d", db18.dsn)
    assert status == 0
    parts = json.loads(out)["spec"]["partitions"]
    assert [(p["name"], p["from"], p["default"]) for p in parts] == [
        ("p_old", "MINVALUE", False), ("p_new", "2020-01-01 00:00:00+00:00", False),
        ("p_default", None, True)]


DEMO_COLS = ("pay_id, pay_ts, pdm_id, tracer, amount, currency, tariff_id, method,"
             " duration_min")


def _demo_fks(db) -> list[tuple]:
    """Foreign keys pointing at legacy.payment: (table, name, valid, columns, referenced)."""
    return db.query(
        "SELECT con.conrelid::regclass::text, con.conname, con.convalidated,"
        " ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),"
        " ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o)"
        " FROM pg_constraint con WHERE con.confrelid = 'legacy.payment'::regclass"
        " AND con.conparentid = 0 ORDER BY 1, 2")


def _check_demo_final(db, capsys, original: list[tuple], spec: dict) -> None:
    """What the issue promises of the demo's table once migrated."""
    # partitioned as planned
    parts = db.query("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                     " JOIN pg_class c ON c.oid = i.inhrelid"
                     " WHERE i.inhparent = 'legacy.payment'::regclass ORDER BY 1")
    assert sorted(p[0] for p in parts) == sorted(p["name"] for p in spec["partitions"])
    assert ("payment_default", "DEFAULT") in parts
    # every row that is not a duplicate by error, with the same values but adjusted seconds
    kept: dict[tuple, tuple] = {}
    for row in original:  # ordered by pay_id: the oldest copy comes first
        kept.setdefault((row[2], row[1], row[3]), row)
    collide: dict[tuple, set] = {}
    for pdm, ts, tracer in kept:
        collide.setdefault((pdm, ts), set()).add(tracer)
    want = {r[0]: r for r in kept.values()}
    got = {r[0]: r for r in db.query(f"SELECT {DEMO_COLS} FROM legacy.payment")}
    assert got.keys() == want.keys() and len(got) < len(original)
    moved = 0
    for pay_id, row in got.items():
        old = want[pay_id]
        assert row[2:] == old[2:] and row[1].replace(second=0) == old[1].replace(second=0)
        if row[1] != old[1]:
            moved += 1
            assert len(collide[(old[2], old[1])]) > 1, old  # only collisions were moved
    assert moved > 0
    assert db.query("SELECT count(*) FROM (SELECT FROM legacy.payment GROUP BY pdm_id, pay_ts"
                    " HAVING count(*) > 1) g") == [(0,)]
    # the referencing tables' keys: valid, on the natural key, at the very row they named
    fks = _demo_fks(db)
    assert [(f[0], f[1], f[2], f[4]) for f in fks] == [
        ("legacy.payment_bonus", "payment_bonus_pay_id_fkey", True, ["pdm_id", "pay_ts"]),
        ("legacy.payment_ext", "payment_ext_orig_pay_id_fkey", True, ["pdm_id", "pay_ts"]),
        ("legacy.payment_ext", "payment_ext_pay_id_fkey", True, ["pdm_id", "pay_ts"])]
    for table, _name, _valid, cols, _ref in fks:
        idcol = "orig_pay_id" if cols[0].startswith("orig_") else "pay_id"
        wrong = db.query(f"SELECT count(*) FILTER (WHERE (r.{cols[0]}, r.{cols[1]})"
                         f" IS DISTINCT FROM (p.pdm_id, p.pay_ts)), count(*) FROM {table} r"
                         f" JOIN legacy.payment p ON p.pay_id = r.{idcol}")
        assert wrong[0][0] == 0 and wrong[0][1] > 0, table
    assert db.query("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                    " WHERE conrelid = 'legacy.payment'::regclass AND contype = 'p'"
                    ) == [("PRIMARY KEY (pdm_id, pay_ts)",)]
    # every foreign key entry touching the new table or a partition of it is validated, the
    # ones PostgreSQL keeps per referenced partition too (on 15 as on 18)
    with psycopg.connect(db.dsn) as conn:
        entries = foreign_key_entries(conn, "legacy.payment")
    assert len(entries) > len(fks) and all(e[3] for e in entries), entries
    status, out, err = run_cli(capsys, "check", "legacy.payment", "--json", "-d", db.dsn)
    assert (status, json.loads(out), err) == (0, [], ""), (out, err)


def test_demo_legacy_payment(scenario_db, capsys):
    """The demo's own table: stopped by its replayed minute with nothing changed; once that is
    resolved, stopped after stage 7 and aborted (the original back exactly), then migrated
    unattended with the insert trigger, end to end."""
    db = scenario_db
    d = ("-d", db.dsn)
    args = ("legacy.payment", "--by", "pay_ts", "--key", "pdm_id,pay_ts", "--tiebreak",
            "tracer", "--target-rows", "2000")
    dump = catalog_dump(db, "legacy", "payment")
    status, _out, err = run_cli(capsys, "migrate", *args, "--apply", "--yes", *d)
    assert status == 1 and "more than 60" in err
    assert catalog_dump(db, "legacy", "payment") == dump
    # the operator resolves the replayed minute (here: removes it)
    db.execute("DELETE FROM legacy.payment_bonus WHERE pay_id IN (SELECT pay_id FROM"
               " legacy.payment WHERE tracer LIKE 'TR-REPLAY-%');"
               " DELETE FROM legacy.payment_ext WHERE pay_id IN (SELECT pay_id FROM"
               " legacy.payment WHERE tracer LIKE 'TR-REPLAY-%') OR orig_pay_id IN (SELECT"
               " pay_id FROM legacy.payment WHERE tracer LIKE 'TR-REPLAY-%');"
               " DELETE FROM legacy.payment WHERE tracer LIKE 'TR-REPLAY-%';"
               " ANALYZE legacy.payment")
    original = db.query(f"SELECT {DEMO_COLS} FROM legacy.payment ORDER BY pay_id")
    referencing = {t: db.query(f"SELECT * FROM legacy.{t} ORDER BY 1")
                   for t in ("payment_bonus", "payment_ext")}
    fks = _demo_fks(db)

    # stages 1-7 (one by one), then abort: the original exactly as it was, with its rows
    # (deduplicated and seconds adjusted by stages 2 and 3, which abort does not undo)
    with db.connect() as conn:
        spec = prepare(conn, Choices("legacy", "payment", "pay_ts", ("pdm_id", "pay_ts"),
                                     "tracer", target_rows=2000)).spec
    assert _run_to(db, spec, "dependencies").ok
    assert _demo_fks(db)[0][4] == ["pdm_id", "pay_ts"]
    status, _out, err = run_cli(capsys, "migrate", "legacy.payment", "--abort", "--apply",
                                "--yes", *d)
    assert status == 0, err
    after = catalog_dump(db, "legacy", "payment")
    assert after == dump
    assert _demo_fks(db) == fks
    deduped = db.query(f"SELECT {DEMO_COLS} FROM legacy.payment ORDER BY pay_id")
    assert len(deduped) < len(original)
    assert [r[0] for r in db.query("SELECT * FROM legacy.payment_ext ORDER BY 1")] == [
        r[0] for r in referencing["payment_ext"]]  # no key column left behind

    # unattended, every stage, the insert trigger chosen
    status, _out, err = run_cli(capsys, "migrate", *args, "--insert-trigger", "--apply", "--yes",
                                *d)
    assert status == 0, err
    status, out, _ = run_cli(capsys, "migrate", "legacy.payment", "status", "--json", *d)
    doc = json.loads(out)
    assert (doc["last_stage"], doc["next_stage"], doc["insert_trigger"]) == ("finish", None, True)
    _check_demo_final(db, capsys, original, doc["spec"])
    # a payment colliding with a stored one moves to a free second of its minute
    row = db.query("SELECT pdm_id, pay_ts FROM legacy.payment WHERE pdm_id % 5 = 2"
                   " ORDER BY pay_id LIMIT 1")[0]
    new_ts = db.query("INSERT INTO legacy.payment (pay_ts, pdm_id, tracer, amount, tariff_id,"
                      " method, duration_min) VALUES (%s, %s, 'TR-NEW', 1, 1, 'card', 15)"
                      " RETURNING pay_ts", (row[1], row[0]))[0][0]
    assert new_ts != row[1] and new_ts.replace(second=0) == row[1].replace(second=0)


def test_resume_with_another_layout_before_build(db18, capsys):
    _build(db18, n)
    d = ("-d", db18.dsn)
    with db18.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
    assert _run_to(db18, spec, "layout").ok  # stages 1-4 done, yearly partitions recorded
    _one_line(run_cli(capsys, "migrate", "legacy.payment", "--resume", "--key", "pay_ts",
                      "--dry-run", *d), "cannot change")
    status, out, err = run_cli(capsys, "migrate", "legacy.payment", "--resume",
                               "--target-rows", "1000", "--dry-run", "--json", *d)
    assert status == 0, err
    doc = json.loads(out)
    # stage 4 records the new layout again, then Build and Copy use it
    assert [s["name"] for s in doc["stages"]][:4] == ["preflight", "layout", "build", "copy"]
    assert doc["spec"]["partitions"][0]["name"] == "payment_2019_2025"  # quiet years merged
    status, _out, err = run_cli(capsys, "migrate", "legacy.payment", "--resume",
                                "--target-rows", "1000", "--apply", "--yes", *d)
    assert status == 0, err
    assert db18.query("SELECT count(*) FROM pg_inherits WHERE inhparent = "
                      "'legacy.payment'::regclass")[0][0] == len(doc["spec"]["partitions"])
    _one_line(run_cli(capsys, "migrate", "legacy.payment", "--resume", "--interval", "year",
                      "--dry-run", *d), "cannot change once the partitioned table is built")


def test_finish_asks_for_the_table_name(monkeypatch, capsys):
    """Before Finish drops the original, 'yes' is not enough: the table's name is typed."""
    from tui.commands.migrate import _confirm
    from tui.core.migrate.stages import stage
    from tui.core.plans import Plan
    from tui.core.plans.engine.model import Statement, Step

    plan = Plan(kind="migrate", title="t", target="legacy.payment", target_oid=1,
                steps=[Step("drop", "drop it", [Statement(sql.SQL("SELECT 1"))])], summary=[])
    answers = iter(["yes", "legacy.payment", "yes"])
    monkeypatch.setattr("builtins.input", lambda _prompt: next(answers))
    assert _confirm(stage("finish"), plan) is False
    assert _confirm(stage("finish"), plan) is True
    assert _confirm(stage("copy"), plan) is True  # other stages: 'yes'
    capsys.readouterr()


def test_a_stage_that_fails_says_how_to_resume_this_table(db18, capsys, tmp_path):
    """'resume with pgparts migrate TABLE --resume --apply' left the operator to fill in the
    table; the table is named, as it is typed in a shell."""
    _build(db18, n)
    config = tmp_path / "c.toml"
    config.write_text('[plans]\nlock_timeout = "100ms"\nlock_retries = 1\n')
    holder = psycopg.connect(db18.dsn)
    try:
        # stage 2 locks the table SHARE; a VACUUM's lock holds it off (not a writer, which
        # stage 1 refuses before anything is recorded)
        holder.execute("LOCK TABLE legacy.payment IN SHARE UPDATE EXCLUSIVE MODE")
        status, _out, err = run_cli(capsys, "migrate", *ARGS, "--apply", "--yes",
                                    "--config", str(config), "-d", db18.dsn)
    finally:
        holder.close()
    assert status != 0, err
    assert "resume with 'pgparts migrate legacy.payment --resume --apply'" in err, err


def test_ctrl_c_during_the_copy(db18, tmp_path):
    """Ctrl-C while the copy's sessions wait for the original: cancelled on the server, a
    clear 'cancelled' line, exit 130, no traceback; the copy committed nothing."""
    _build(db18, n)
    with db18.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
    assert _run_to(db18, spec, "build").ok
    config = tmp_path / "config.toml"
    config.write_text('[plans]\nlock_timeout = "30s"\n')
    env = {**os.environ, "PGPARTS_CONFIG": str(config), "PGPARTS_STATE_DIR": str(tmp_path)}
    with psycopg.connect(db18.dsn) as holder:
        # a VACUUM's lock on the original (not a writer, which the preflight refuses) holds
        # off the SHARE lock of every copy step
        holder.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(
            spec.old_table))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "migrate", "legacy.payment", "--resume",
             "--apply", "--yes", "-d", db18.dsn], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60  # a loaded machine can be slow to start a process
        waiting = 0
        with psycopg.connect(db18.dsn, autocommit=True) as watch:
            while time.monotonic() < deadline and proc.poll() is None and waiting < 2:
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                    " 'pgparts plan' AND wait_event_type = 'Lock'").fetchone()[0]
                time.sleep(0.05)
        if waiting < 2:  # both sessions of the copy group
            proc.kill()
            pytest.fail(f"the copy never waited on two sessions: {proc.communicate()}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        holder.rollback()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "failed" not in err, err
    assert "pgparts: stage 6 (copy) cancelled: cancelled by the operator" in err, err
    assert "canceling statement" not in err, err
    with db18.connect() as conn:
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            spec.table)).fetchone()[0] == 0
