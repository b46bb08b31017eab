"""`pgparts migrate`: bad input, dry run, SQL, apply (stopped by a group over 60 with nothing
changed; stages 1-6 run unattended), status, abort."""

from __future__ import annotations

import json

import psycopg
from psycopg import sql

from tui.cli import main
from tui.core.migrate.migration import prepare

from .migrate_support import PLAIN, build_legacy
from .test_migrate_stages import _build, _choices, _rows, _run_to, catalog_dump

n = PLAIN
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
    assert status == 1 and "more than 60 rows in one minute" in err and "minute" in err
    assert _rows(db18, n.ident(n.table), n) == before
    assert catalog_dump(db18, n.schema, n.table) == dump
    assert db18.query("SELECT to_regclass('pgparts.plan_objects')") == [(None,)]


def test_dry_run_sql_apply_status_abort(db18, capsys):
    _build(db18, n)
    d = ("-d", db18.dsn)
    dump = catalog_dump(db18, n.schema, n.table)
    status, out, _ = run_cli(capsys, "migrate", *ARGS, "--dry-run", *d)
    assert status == 0
    for number in range(1, 10):
        assert f"== stage {number}:" in out
    assert "not available on this branch" in out and "duplicates by error:" in out
    assert "legacy.payment_bonus.payment_bonus_pay_id_fkey" in out
    assert "views: legacy.payment_daily" in out and "(serial of pay_id)" in out
    status, out, _ = run_cli(capsys, "migrate", *ARGS, "--dry-run", "--json", *d)
    doc = json.loads(out)
    assert [s["name"] for s in doc["stages"]][:6] == [
        "preflight", "duplicates", "collisions", "layout", "build", "copy"]
    assert doc["spec"]["key"] == ["pdm_id", "pay_ts"] and doc["spec"]["surrogate"] == "pay_id"
    status, out, _ = run_cli(capsys, "migrate", *ARGS, "--sql", *d)
    assert status == 0 and 'PARTITION BY RANGE ("pay_ts")' in out.replace("pay_ts", '"pay_ts"'
                                                                         ).replace('""', '"')
    assert "INSERT INTO" in out and "ALTER TABLE" in out
    assert catalog_dump(db18, n.schema, n.table) == dump  # dry run and SQL changed nothing

    status, _out, err = run_cli(capsys, "migrate", *ARGS, "--apply", "--yes", *d)
    # stages 1-6 run; stage 7 is not part of this code yet
    assert status == 1 and "stage 7 (dependencies)" in err, err
    assert "copy payment_2019: done" in err or "payment_2019" in err
    status, out, _ = run_cli(capsys, "migrate", "legacy.payment", "status", "--json", *d)
    doc = json.loads(out)
    assert (doc["last_stage"], doc["next_stage"]) == ("copy", "dependencies")
    assert [s["done"] for s in doc["stages"]] == [False] + [True] * 5 + [False] * 3
    status, out, _ = run_cli(capsys, "migrate", "legacy.payment", "status", *d)
    assert status == 0 and "last stage done: copy" in out
    _one_line(run_cli(capsys, "migrate", *ARGS, "--dry-run", *d), "is recorded")
    status, _out, err = run_cli(capsys, "migrate", "legacy.payment", "--resume", "--apply",
                                "--yes", *d)
    assert status == 1 and "stage 7" in err
    status, _out, err = run_cli(capsys, "migrate", "legacy.payment", "--abort", "--apply",
                                "--yes", *d)
    assert status == 0, err
    after = catalog_dump(db18, n.schema, n.table)
    assert {k: v for k, v in after.items()} == {k: v for k, v in dump.items()}
    status, out, _ = run_cli(capsys, "migrate", "legacy.payment", "status", *d)
    assert "no migration recorded" in out
    assert db18.query(sql.SQL("SELECT count(*) FROM {}").format(n.ident(n.table)))[0][0] > 0


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


def test_demo_legacy_payment(scenario_db, capsys):
    """The demo's own table: stopped by its replayed minute with nothing changed; once that is
    resolved, stages 1-6 run unattended, every row is copied, and abort restores it all."""
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
    status, _out, err = run_cli(capsys, "migrate", *args, "--apply", "--yes", *d)
    assert status == 1 and "stage 7 (dependencies)" in err, err
    cols = "pay_id, pay_ts, pdm_id, tracer, amount, currency, tariff_id, method, duration_min"
    new = db.query(f"SELECT {cols} FROM legacy.payment ORDER BY pay_id")
    assert new == db.query(f"SELECT {cols} FROM legacy.payment_premigration ORDER BY pay_id")
    assert db.query("SELECT count(*) FROM (SELECT FROM legacy.payment"
                    " GROUP BY pdm_id, pay_ts HAVING count(*) > 1) g") == [(0,)]
    assert db.query("SELECT relkind::text FROM pg_class WHERE oid = 'legacy.payment'::regclass"
                    ) == [("p",)]
    status, _out, err = run_cli(capsys, "migrate", "legacy.payment", "--abort", "--apply",
                                "--yes", *d)
    assert status == 0, err
    after = catalog_dump(db, "legacy", "payment")
    assert after == {**dump, "oid": after["oid"]} and after["oid"] == dump["oid"]


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
    assert status == 1 and "stage 7" in err
    assert db18.query("SELECT count(*) FROM pg_inherits WHERE inhparent = "
                      "'legacy.payment'::regclass")[0][0] == len(doc["spec"]["partitions"])
    _one_line(run_cli(capsys, "migrate", "legacy.payment", "--resume", "--interval", "year",
                      "--dry-run", *d), "cannot change once the partitioned table is built")
