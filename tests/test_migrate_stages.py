"""The migration's stages as plans, against real servers: end to end, killed inside stages 2, 5,
6, 7 and 9 and resumed, aborted (catalog dumps compared), stopped by a collision group over 60,
identity columns, a table a view reads. Small tables (a few hundred rows)."""

from __future__ import annotations

import pytest
from psycopg import sql

from tui.core.migrate import MigrateError
from tui.core.migrate.abort import abort_plan, stage_7_begun
from tui.core.migrate.migration import Choices, next_stages, prepare, run_plan
from tui.core.migrate.stages import stage, standing
from tui.core.names import display_name
from tui.core.plans.engine.runner import Outcome, Progress

from .migrate_support import HOSTILE, OVER_60_PDM, PLAIN, Names, build_legacy

ROWS = 300


def _build(db, n: Names, *, over_60: bool = False) -> None:
    with db.connect() as conn:
        build_legacy(conn, n, rows=ROWS)
        if not over_60:
            # the replayed minute is another test's subject
            conn.execute(sql.SQL("DELETE FROM {b} WHERE {id} IN (SELECT {id} FROM {t}"
                                 " WHERE {pdm} = {o})").format(
                b=n.ident(n.bonus), id=sql.Identifier(n.id), t=n.ident(n.table),
                pdm=sql.Identifier(n.pdm), o=sql.Literal(OVER_60_PDM)))
            conn.execute(sql.SQL("DELETE FROM {t} WHERE {tr} LIKE 'REPLAY-%'").format(
                t=n.ident(n.table), tr=sql.Identifier(n.tracer)))
        conn.commit()


def _choices(n: Names) -> Choices:
    return Choices(n.schema, n.table, n.ts, (n.pdm, n.ts), n.tracer, interval="year")


def catalog_dump(db, schema: str, name: str) -> dict:
    """What abort must restore: columns, defaults, indexes, constraints, grants, comments,
    sequence ownership, and the foreign keys pointing at the table."""
    def q(text: str) -> list:
        return db.query(text, {"s": schema, "n": name})
    rel = "(SELECT c.oid FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace" \
          " WHERE s.nspname = %(s)s AND c.relname = %(n)s)"
    return {
        "oid": q(f"SELECT {rel}"),
        "columns": q("SELECT attname, format_type(atttypid, atttypmod), attnotnull, attidentity,"
                     " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d"
                     " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                     f" WHERE attrelid = {rel} AND attnum > 0 ORDER BY attnum"),
        "indexes": q("SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                     f" JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = {rel}"
                     " ORDER BY 1"),
        "constraints": q("SELECT conname, contype, pg_get_constraintdef(oid), convalidated"
                         f" FROM pg_constraint WHERE conrelid = {rel} ORDER BY 1"),
        "referencing": q("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
                         f" FROM pg_constraint WHERE confrelid = {rel} ORDER BY 1, 2"),
        "grants": q(f"SELECT relacl::text FROM pg_class WHERE oid = {rel}"),
        "comment": q(f"SELECT obj_description({rel}, 'pg_class')"),
        "sequences": q("SELECT s.relname, d.deptype FROM pg_depend d JOIN pg_class s"
                       f" ON s.oid = d.objid AND s.relkind = 'S' WHERE d.refobjid = {rel}"
                       " ORDER BY 1"),
        "views": q("SELECT DISTINCT v.relname FROM pg_depend d JOIN pg_rewrite r"
                   " ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class"
                   f" WHERE d.refobjid = {rel} AND v.oid <> {rel} ORDER BY 1"),
    }


def _run_to(db, spec, last: str, hook=None):
    """Run the stages from where the migration stands up to `last`; the last result."""
    result = None
    with db.connect() as conn:
        todo = next_stages(conn, spec)
    for s in todo:
        with db.connect() as conn:
            plan = s.plan(conn, spec)
        result = run_plan(db.target, plan, hook=hook)
        if not result.ok or s.name == last:
            return result
    return result


def _rows(db, table: sql.Composable, n: Names) -> list[tuple]:
    return db.query(sql.SQL("SELECT {id}, {ts}, {pdm}, {tr}, {a} FROM {t} ORDER BY 1").format(
        id=sql.Identifier(n.id), ts=sql.Identifier(n.ts), pdm=sql.Identifier(n.pdm),
        tr=sql.Identifier(n.tracer), a=sql.Identifier(n.amount), t=table))


def test_stages_1_to_6_end_to_end(db):
    # hostile names here; the plain ones run end to end in test_migrate_cli.py
    n = HOSTILE
    _build(db, n)
    db.execute(sql.SQL("COMMENT ON TABLE {} IS 'payments'").format(n.ident(n.table)))
    db.execute(sql.SQL("GRANT SELECT ON {} TO PUBLIC").format(n.ident(n.table)))
    db.execute(sql.SQL("ALTER TABLE {t} ADD CONSTRAINT {c} CHECK ({a} >= 0);"
                       " COMMENT ON COLUMN {t}.{a} IS 'in €'").format(
        t=n.ident(n.table), c=sql.Identifier(f"{n.amount} ≥ 0"), a=sql.Identifier(n.amount)))
    with db.connect() as conn:
        prep = prepare(conn, _choices(n))
    spec = prep.spec
    assert prep.duplicate_groups > 0 and prep.collision_groups > 0 and not prep.unfixable
    result = _run_to(db, spec, "copy")
    assert result is not None and result.ok, result.error
    with db.connect() as conn:
        st = standing(conn, n.schema, n.table)
        assert (st.recorded.state, st.next_stage, st.problems) == ("copy", "dependencies", [])
    # every row of the original (deduplicated, seconds rewritten) is in the new table
    new_rows = _rows(db, n.ident(n.table), n)
    assert new_rows == _rows(db, n.ident(spec.old_name), n)
    assert len(new_rows) == ROWS + sum(1 + i % 3 for i in range(0, ROWS, 7)
                                       if (1 + (i * 7919) % 25) % 5 == 2)
    relkind, comment, acl = db.query(sql.SQL(
        "SELECT relkind::text, obj_description(oid, 'pg_class'), relacl::text FROM pg_class"
        " WHERE oid = {}::regclass").format(sql.Literal(n.ident(n.table).as_string())))[0]
    assert (relkind, comment) == ("p", "payments") and "=r/" in acl
    parts = db.query(sql.SQL(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = {}::regclass ORDER BY 1"
    ).format(sql.Literal(n.ident(n.table).as_string())))
    names_ = [p[0] for p in parts]
    assert names_[:2] == [f"{n.table}_2019", f"{n.table}_2020"]
    assert f"{n.table}_default" in names_ and len(names_) == len(spec.partitions)
    new_dump = catalog_dump(db, n.schema, n.table)
    checks = [c for c in new_dump["constraints"] if c[1] == "c"]
    assert [c[0] for c in checks] == [f"{n.amount} ≥ 0"] and ">= (0)::numeric" in checks[0][2]
    assert db.query(sql.SQL("SELECT col_description({}::regclass, 5)").format(
        sql.Literal(n.ident(n.table).as_string()))) == [("in €",)]
    # the serial keeps counting where it stood, from the new table
    nextval = db.query(sql.SQL("SELECT pg_get_serial_sequence({}, {})").format(
        sql.Literal(n.ident(n.table).as_string()), sql.Literal(n.id)))[0][0]
    assert nextval is not None


def _killer(db, at: tuple[str, int, int]):
    """A runner hook that terminates the plan's connection at (stage title, step, statement),
    both from 1; 0 is the last (step, or statement of that step)."""
    fired: list[int] = []

    def hook(event: str, step: int, stmt: int, runner) -> None:
        want = at[1] or len(runner.plan.steps)
        want_stmt = at[2] or len(runner.plan.steps[want - 1].statements)
        if event == "statement" and (runner.plan.title.endswith(at[0]), step, stmt) == (
                True, want, want_stmt) and not fired:
            fired.append(1)
            db.execute("SELECT pg_terminate_backend(%s)", (runner.backend_pid,))
    return hook, fired


def test_killed_inside_stages_2_5_6_7_9_resumes(db):
    n = PLAIN
    _build(db, n)
    with db.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
    before = _rows(db, n.ident(n.table), n)
    copied: list[tuple] = []
    with db.connect() as conn:
        dedupe = stage("duplicates").plan(conn, spec).steps[1]
        texts = [st.render(conn) for st in dedupe.statements]
    # no index on the referencing columns: one is built for the delete's foreign key checks
    # (each deleted row would scan the referencing table) and dropped in the same transaction
    assert [lk.mode for lk in dedupe.locks] == ["EXCLUSIVE", "SHARE", "SHARE", "SHARE"]
    helpers = [t for t in texts if t.startswith("CREATE INDEX \"pgparts_dedupe_")]
    assert len(helpers) == 3 and texts.index(helpers[-1]) < next(
        i for i, t in enumerate(texts) if t.startswith("DELETE FROM"))
    # stage 2: inside the dedupe transaction (after the re-pointing, before the delete);
    # stage 7: between a partition's unique index and its primary key; stage 9: after the
    # original's DROP, before the record of the stage (same transaction: both roll back)
    for title, step, stmt, last in (("duplicates by error", 2, 8, "duplicates"),
                                    ("build", 1, 12, "build"), ("copy", 2, 2, "copy"),
                                    ("dependencies", 2, 2, "dependencies"),
                                    ("finish", 0, 0, "finish")):
        if last == "finish":
            copied = _rows(db, n.ident(spec.old_name), n)
            assert _rows(db, n.ident(n.table), n) == copied
        hook, fired = _killer(db, (title, step, stmt))
        result = _run_to(db, spec, last, hook=hook)
        assert fired and result is not None and not result.ok, title
        if title == "duplicates by error":
            assert _rows(db, n.ident(n.table), n) == before  # rolled back with the connection
        with db.connect() as conn:
            assert standing(conn, n.schema, n.table).problems == []
        result = _run_to(db, spec, last)
        assert result is not None and result.ok, (title, result.error)
        with db.connect() as conn:
            assert standing(conn, n.schema, n.table).recorded.state == last
    assert _rows(db, n.ident(n.table), n) == copied
    assert len(copied) < len(before)  # duplicates went
    assert db.query("SELECT relname FROM pg_class WHERE relname LIKE 'pgparts%'") == []
    with db.connect() as conn:
        st = standing(conn, n.schema, n.table)
        assert (st.next_stage, st.problems) == (None, [])
        assert next_stages(conn, spec) == [stage("preflight")]
    assert db.query(sql.SQL("SELECT to_regclass({})").format(
        sql.Literal(n.ident(spec.old_name).as_string()))) == [(None,)]
    assert db.query(sql.SQL(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = {}::regclass"
        " AND contype = 'p'").format(sql.Literal(n.ident(n.table).as_string()))) == [
        ("PRIMARY KEY (pdm_id, pay_ts)",)]


def test_abort_after_build_and_after_copy_restores_the_original(db):
    n = HOSTILE  # the plain names are aborted in test_migrate_cli.py
    _build(db, n)
    db.execute(sql.SQL("GRANT SELECT, UPDATE ({id}) ON {t} TO PUBLIC").format(
        id=sql.Identifier(n.id), t=n.ident(n.table)))
    with db.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
    assert _run_to(db, spec, "collisions").ok
    original = catalog_dump(db, n.schema, n.table)
    assert original["views"] == [(n.view,)] and original["referencing"]
    rows = _rows(db, n.ident(n.table), n)
    for last in ("build", "copy"):
        assert _run_to(db, spec, last).ok
        assert catalog_dump(db, n.schema, n.table) != original
        with db.connect() as conn:
            plan = abort_plan(conn, n.schema, n.table)
        assert run_plan(db.target, plan).ok
        assert catalog_dump(db, n.schema, n.table) == original
        assert _rows(db, n.ident(n.table), n) == rows
        assert db.query(sql.SQL("SELECT count(*) FROM {}").format(n.ident(n.view)))[0][0] > 0
        with db.connect() as conn:
            assert standing(conn, n.schema, n.table).recorded is None
        # the next round starts again from the start (recorded anew)
    # stage 7 begun (here: a key on the new table), the record still at 'copy': stage 7's
    # own abort (restore.py) undoes it
    assert _run_to(db, spec, "copy").ok
    with db.connect() as conn:
        rec = standing(conn, n.schema, n.table).recorded
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({}, {})").format(
            n.ident(n.table), sql.Identifier(n.pdm), sql.Identifier(n.ts)))
        conn.commit()
        assert stage_7_begun(conn, rec.new_oid)
        plan = abort_plan(conn, n.schema, n.table)
    assert [s.title for s in plan.steps][-1] == "forget the migration"
    assert run_plan(db.target, plan).ok
    assert catalog_dump(db, n.schema, n.table) == original
    assert _rows(db, n.ident(n.table), n) == rows
    # after stage 7 (recorded): the same abort, and the original exactly as it was
    assert _run_to(db, spec, "dependencies").ok
    with db.connect() as conn:
        assert standing(conn, n.schema, n.table).next_stage == "finish"  # stage 8 not chosen
        plan = abort_plan(conn, n.schema, n.table)
    assert run_plan(db.target, plan).ok
    assert catalog_dump(db, n.schema, n.table) == original
    assert _rows(db, n.ident(n.table), n) == rows
    with db.connect() as conn:
        assert standing(conn, n.schema, n.table).recorded is None
        with pytest.raises(MigrateError, match="no migration"):
            abort_plan(conn, n.schema, n.table)


def test_group_over_60_stops_stage_3_with_nothing_changed(db):
    n = PLAIN
    _build(db, n, over_60=True)
    with db.connect() as conn:
        prep = prepare(conn, _choices(n))
    assert [g.size for g in prep.unfixable] == [65]
    assert _run_to(db, prep.spec, "duplicates").ok
    before = _rows(db, n.ident(n.table), n)
    with db.connect() as conn:
        plan = stage("collisions").plan(conn, prep.spec)
    result = run_plan(db.target, plan)
    assert result.outcome == Outcome.FAILED and "more than 60" in result.error
    assert _rows(db, n.ident(n.table), n) == before
    with db.connect() as conn:
        st = standing(conn, n.schema, n.table)
    assert (st.recorded.state, st.next_stage) == ("duplicates", "collisions")


def test_identity_column_and_a_view(db):
    db.execute("""
        CREATE TABLE public."Evt ;x" (id bigint GENERATED ALWAYS AS IDENTITY (START 100)
                                      PRIMARY KEY, at timestamptz NOT NULL, what text);
        INSERT INTO public."Evt ;x" (at, what) SELECT timestamptz '2024-01-01 00:00+00'
            + make_interval(hours => i * 50), 'e' || i FROM generate_series(1, 200) i;
        CREATE VIEW public.evt_v AS SELECT count(*) AS n FROM public."Evt ;x";
        ANALYZE public."Evt ;x";
    """)
    original = catalog_dump(db, "public", "Evt ;x")
    with db.connect() as conn:
        spec = prepare(conn, Choices("public", "Evt ;x", "at", ("at", "id"),
                                     interval="quarter")).spec
    assert spec.surrogate == "id"
    assert _run_to(db, spec, "copy").ok
    assert db.query('SELECT count(*), max(id) FROM public."Evt ;x"') == [(200, 299)]
    db.execute('INSERT INTO public."Evt ;x" (at, what) VALUES (now(), \'new\')')
    assert db.query('SELECT max(id) FROM public."Evt ;x"') == [(300,)]
    assert db.query("SELECT n FROM public.evt_v") == [(200,)]  # still reads the original
    db.execute('DELETE FROM public."Evt ;x" WHERE what = \'new\'')
    with db.connect() as conn:
        plan = abort_plan(conn, "public", "Evt ;x")
    assert run_plan(db.target, plan).ok
    assert catalog_dump(db, "public", "Evt ;x") == original


def test_stage_2_result_says_what_it_did(db):
    """Stage 2's result says what it deleted, re-pointed and verified (its step's line, shown
    by the wizard and `pgparts migrate`), not only that it is done; hostile names."""
    n = HOSTILE
    _build(db, n)
    with db.connect() as conn:
        prep = prepare(conn, _choices(n))
    # the bonus rows pointing at a copy that is not the oldest of its group
    bonus = sql.SQL("SELECT count(*) FROM {b} AS b JOIN {t} AS t USING ({id})"
                    " WHERE t.{id} <> (SELECT min(u.{id}) FROM {t} AS u WHERE u.{pdm} = t.{pdm}"
                    " AND u.{ts} = t.{ts} AND u.{tr} = t.{tr})").format(
        b=n.ident(n.bonus), t=n.ident(n.table), id=sql.Identifier(n.id),
        pdm=sql.Identifier(n.pdm), ts=sql.Identifier(n.ts), tr=sql.Identifier(n.tracer))
    repoint = db.query(bonus)[0][0]
    result = _run_to(db, prep.spec, "duplicates")
    assert result is not None and result.ok, result.error
    line = "; ".join(o.verification for o in result.done_steps if o.verification)
    assert repoint > 0 and prep.duplicate_rows > 0
    assert f"{repoint:,} reference(s) in {display_name(n.schema, n.bonus)} ({n.id}) re-pointed " \
        "to the kept row" in line, line
    assert f"{prep.duplicate_rows:,} duplicate row(s) deleted" in line, line
    assert ("verified: no deleted id left, the kept (oldest) row of each of "
            f"{prep.duplicate_groups:,} group(s) present") in line, line


def test_copy_cancelled_in_its_first_step_says_what_is_true(db):
    """Cancelled inside the copy of the first partition: the partitions with no rows to copy
    pass their done-check, but nothing was committed, and the state says so (it said 'steps
    3-10 of 11 are committed' while the progress showed them pending)."""
    n = PLAIN
    _build(db, n)
    with db.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
    result = _run_to(db, spec, "build")
    assert result is not None and result.ok, result.error

    def hook(event: str, step: int, stmt: int, runner) -> None:
        if (event, step, stmt) == ("statement", 1, 2):
            runner.cancel()

    with db.connect() as conn:
        plan = stage("copy").plan(conn, spec)
    plan.sessions = 1  # one step at a time: the cancel comes before any other copy commits
    seen: list[Progress] = []
    result = run_plan(db.target, plan, hook=hook, progress=seen.append, write_journal=False)
    assert result.outcome == Outcome.CANCELLED, (result.error, result.state)
    # nothing copied by this run: no rate left over from the rolled-back rows either
    last = seen[-1]
    assert (last.rows_done, last.bytes_done, last.rate_rows, last.rows_skipped) == (0, 0, 0, 0)
    empty = [i for i, p in enumerate(spec.partitions, 1) if not p.rows]
    assert empty and 1 not in empty
    total = len(plan.steps)
    assert result.state == (
        f"no step of {total} was committed by this run; steps {_spans(empty)} have nothing "
        "left to do (done earlier, or nothing to do there); step 1 was rolled back; run the "
        "same plan again to resume"), result.state
    assert "are committed" not in result.state

    # the first partition copied, then the stage run again: the rows of the steps found done
    # are counted as done earlier (not 0% of the total), the rate is that of this run's rows
    with db.connect() as conn:
        plan = stage("copy").plan(conn, spec)
    plan.sessions = 1
    first = plan.steps[0]
    plan.steps = [*plan.steps[:1], plan.steps[-1]]  # just the first copy (the record fails)
    plan.steps[-1].done = lambda _c: True
    assert run_plan(db.target, plan, write_journal=False).ok
    with db.connect() as conn:
        plan = stage("copy").plan(conn, spec)
    plan.sessions = 1
    seen.clear()
    result = run_plan(db.target, plan, progress=seen.append, write_journal=False)
    assert result.ok, result.error
    last = seen[-1]
    skipped = sum(st.est_rows for st in first.statements if st.kind == "copy")
    copied = sum(o.rows for o in result.steps)
    assert skipped > 0 and copied > 0 and (last.rows_skipped, last.rows_done) == (skipped, copied)
    assert last.rate_rows > 0


def _spans(nums: list[int]) -> str:
    out, start = [], nums[0]
    for a, b in zip(nums, [*nums[1:], None], strict=True):
        if b != a + 1:
            out.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(out)
