"""Stage 7 (Dependencies) through the real runner, from the state after Copy: keys, indexes,
foreign keys re-pointed at the natural key (a referencing table that had only the surrogate id
back-filled), the view, trigger, grants and comments re-created; a kill inside the stage and
a resume."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tui.core.migrate import repoint
from tui.core.migrate.dependencies import dependency_notes, dependency_steps, limitations
from tui.core.migrate.repoint import derived_name
from tui.core.plans.engine.runner import Outcome

from .migrate_stages import after_copy, foreign_key_entries, killer, run_stage
from .migrate_support import HOSTILE, PLAIN, Names


def _fks(conn: psycopg.Connection, n: Names, rel: str) -> list[tuple]:
    return conn.execute(
        "SELECT con.conname, con.confrelid, con.convalidated,"
        " ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),"
        " ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o)"
        " FROM pg_constraint con WHERE con.conrelid = %s::regclass AND con.contype = 'f'"
        " AND con.conparentid = 0 ORDER BY 1", (n.ident(rel).as_string(conn),)).fetchall()


def check_final(conn: psycopg.Connection, n: Names, spec) -> None:
    """Everything stage 7 promises, read back from the catalog and the rows."""
    new = n.ident(n.table).as_string(conn)
    new_oid = _oid(conn, n.ident(n.table))
    old = sql.Identifier(n.schema, spec.old_name)
    # primary key on the natural key, every index valid and attached on every partition
    pk = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass"
        " AND contype = 'p'", (new,)).fetchone()[0]
    assert pk == f"PRIMARY KEY ({_qi(conn, n.ts)}, {_qi(conn, n.pdm)})"
    parents = conn.execute(
        "SELECT i.relname, x.indisvalid, (SELECT count(*) FROM pg_inherits h"
        " WHERE h.inhparent = x.indexrelid) FROM pg_index x JOIN pg_class i"
        " ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass ORDER BY 1", (new,)).fetchall()
    assert len(parents) == 4  # key, time, machine + time, surrogate id
    assert all(valid and attached == 3 for _, valid, attached in parents), parents
    # the table's own foreign key, valid, on the parent and each partition
    own = _fks(conn, n, n.table)
    assert [(f[1], f[2], f[3]) for f in own] == [(_oid(conn, n.ident(n.pdm_table)), True,
                                                  [n.pdm])]
    # referencing tables: on the natural key, valid, under their old names
    bonus = _fks(conn, n, n.bonus)
    assert [(f[1], f[2], f[3], f[4]) for f in bonus] == [
        (new_oid, True, [derived_name(n.id, n.id, n.ts), derived_name(n.id, n.id, n.pdm)],
         [n.ts, n.pdm])]
    ext = _fks(conn, n, n.ext)
    assert sorted(f[3][0] for f in ext) == sorted(
        [derived_name(n.id, n.id, n.ts), derived_name("orig", n.id, n.ts)])
    assert all(f[1] == new_oid and f[2] for f in ext)
    # every entry validated, the per-partition ones too, on 15 as on 18: the table's own key on
    # each partition, and each referencing key's entry per referenced partition
    entries = foreign_key_entries(conn, new)
    assert len(entries) == 4 * 4 and all(e[3] for e in entries), entries
    # back-filled with the key of the very row each one pointed at
    for rel, col in ((n.bonus, n.id), (n.ext, n.id), (n.ext, "orig")):
        ts_c = sql.Identifier(derived_name(col, n.id, n.ts))
        pdm_c = sql.Identifier(derived_name(col, n.id, n.pdm))
        wrong, total = conn.execute(sql.SQL(
            "SELECT count(*) FILTER (WHERE o.{id} IS NULL OR (r.{tc}, r.{pc}) IS DISTINCT FROM"
            " (o.{ts}, o.{pdm})), count(*) FROM {r} r LEFT JOIN {old} o ON o.{id} = r.{col}"
            " WHERE r.{col} IS NOT NULL").format(
            id=sql.Identifier(n.id), tc=ts_c, pc=pdm_c, ts=sql.Identifier(n.ts),
            pdm=sql.Identifier(n.pdm), r=n.ident(rel), old=old, col=sql.Identifier(col))
        ).fetchone()
        assert wrong == 0 and total > 0, (rel, col)
    notnull = conn.execute(
        "SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = %s::regclass"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (n.ident(n.ext).as_string(conn),)).fetchall()
    # pay_id was NOT NULL: so is its key; orig was nullable: so is its key
    assert dict(notnull)[derived_name(n.id, n.id, n.ts)] is True
    assert dict(notnull)[derived_name("orig", n.id, n.ts)] is False
    # the view reads the new table and gives what it gave
    view_rels = conn.execute(
        "SELECT DISTINCT d.refobjid FROM pg_rewrite r JOIN pg_depend d"
        " ON d.objid = r.oid WHERE r.ev_class = %s::regclass AND d.refobjid <> r.ev_class"
        " AND d.refclassid = 'pg_class'::regclass", (n.ident(n.view).as_string(conn),)
    ).fetchall()
    assert view_rels == [(new_oid,)]
    trg = conn.execute("SELECT tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass"
                       " AND tgname = 'Keep trg'", (new,)).fetchone()
    assert trg == ("D",)
    acl = conn.execute(
        "SELECT privilege_type FROM pg_class c, aclexplode(c.relacl) g WHERE c.oid ="
        " %s::regclass AND g.grantee = 0 ORDER BY 1", (new,)).fetchall()
    assert acl == [("INSERT",), ("SELECT",)]
    col_acl = conn.execute(
        "SELECT a.attname FROM pg_attribute a, aclexplode(a.attacl) g WHERE a.attrelid ="
        " %s::regclass AND g.grantee = 0", (new,)).fetchall()
    assert col_acl == [(n.amount,)]
    assert conn.execute(
        "SELECT c.relrowsecurity, p.polname, pg_get_expr(p.polqual, p.polrelid),"
        " (SELECT count(*) FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename ="
        " 'Notify ;r') FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid"
        " WHERE c.oid = %s::regclass", (new,)).fetchall() == [
        (True, "Pos ;p", f"({_qi(conn, n.amount)} >= (0)::numeric)", 1)]
    assert conn.execute("SELECT obj_description(%s::regclass, 'pg_class')",
                        (new,)).fetchone()[0] == "payments; 'quoted'"
    assert conn.execute("SELECT reltuples > 0 FROM pg_class WHERE oid = %s::regclass",
                        (new,)).fetchone()[0]
    # analyzed: the parent's own statistics and every partition's that holds rows
    assert conn.execute(
        "SELECT bool_and(EXISTS (SELECT FROM pg_statistic s WHERE s.starelid = c.oid"
        " AND s.stainherit = (c.oid = %s::regclass))) FROM pg_class c WHERE c.oid = %s::regclass"
        " OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)"
        " AND c.reltuples > 0", (new, new, new)).fetchone()[0]


def _oid(conn: psycopg.Connection, ident: sql.Identifier) -> int:
    return conn.execute("SELECT %s::regclass::oid", (ident.as_string(conn),)).fetchone()[0]


def _qi(conn: psycopg.Connection, name: str) -> str:
    return conn.execute("SELECT quote_ident(%s)", (name,)).fetchone()[0]


@pytest.mark.parametrize(("names", "identity"), [(PLAIN, True), (HOSTILE, False)],
                         ids=["plain-identity", "hostile-serial"])
def test_dependencies_end_to_end(db, names, identity, monkeypatch):
    # the plain run joins the referencing tables by index probes (here a table counts as
    # small whatever its size), the hostile one as the planner likes: both give the same
    probes = names is PLAIN
    if probes:
        monkeypatch.setattr(repoint, "PROBE_RATIO", 1000.0)
    with db.connect() as conn:
        spec, deps = after_copy(conn, names, identity=identity)
        assert limitations(deps) == []
        assert dependency_notes(conn, spec, deps) == []
        view_before = conn.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(
            names.ident(names.view))).fetchall()
        # before 18 the key is added valid (its one scan) instead of validated afterwards
        scans = (("Back-fill", "Validate the foreign key of")
                 if conn.info.server_version >= 180000 else ("Back-fill", "Foreign key of"))
        joins = [s for s in dependency_steps(conn, spec, deps) if s.title.startswith(scans)]
        assert len(joins) == 6
        assert all(("enable_hashjoin = off" in s.statements[0].render(conn)) == probes
                   for s in joins)
    result = run_stage(db, spec, lambda c: dependency_steps(c, spec, deps))
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        check_final(conn, names, spec)
        assert conn.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(
            names.ident(names.view))).fetchall() == view_before
        # the application goes on: a new payment takes the next id, a bonus points at it
        with conn.transaction(force_rollback=True):
            row = conn.execute(sql.SQL(
                "INSERT INTO {t} ({ts}, {pdm}, {tr}) VALUES ('2020-06-01 10:00Z', 3, 'NEW')"
                " RETURNING {id}, (SELECT max({id}) FROM {old})").format(
                t=names.ident(names.table), ts=sql.Identifier(names.ts),
                pdm=sql.Identifier(names.pdm), tr=sql.Identifier(names.tracer),
                id=sql.Identifier(names.id),
                old=sql.Identifier(names.schema, spec.old_name))).fetchone()
            assert row[0] > row[1]
            conn.execute(sql.SQL(
                "INSERT INTO {b} ({id}, {ts}, {pdm}, points) VALUES (%s, '2020-06-01 10:00Z',"
                " 3, 1)").format(b=names.ident(names.bonus), id=sql.Identifier(names.id),
                                 ts=sql.Identifier(names.ts), pdm=sql.Identifier(names.pdm)),
                (row[0],))
            with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
                conn.execute(sql.SQL(
                    "INSERT INTO {b} ({id}, {ts}, {pdm}, points) VALUES (0,"
                    " '2020-06-01 10:01Z', 3, 1)").format(
                    b=names.ident(names.bonus), id=sql.Identifier(names.id),
                    ts=sql.Identifier(names.ts), pdm=sql.Identifier(names.pdm)))
        # built again, nothing is left to do
        assert [s.title for s in dependency_steps(conn, spec, deps)] == []


def test_killed_inside_dependencies_then_resumed(db):
    n = HOSTILE
    with db.connect() as conn:
        spec, deps = after_copy(conn, n)
        first = dependency_steps(conn, spec, deps)
    # between a partition's index build and its ATTACH; inside a back-fill; between the old
    # key's rename and the new key; before a validation; before the old key's drop. Each run
    # plans again from the catalog (what is done is left out), as a resumed stage does.
    # (before 18 there is no validation step: the key is added valid, killed in its ADD)
    for prefix, stmt in (("Index ", 2), ("Back-fill", 1), ("Foreign key of", 0),
                         ("Validate the foreign key", 1), ("Retire", 1)):
        with db.connect() as conn:
            steps = dependency_steps(conn, spec, deps)
        i = next((k for k, s in enumerate(steps, 1) if s.title.startswith(prefix)
                  and not s.title.endswith("(parent only)")), 0)
        if i == 0 and prefix.startswith("Validate") and db.server.version_num < 180000:
            continue
        stmt = stmt or len(steps[i - 1].statements)  # 0: the last, the key's ADD
        hook, fired = killer(db, {(i, stmt)})
        result = run_stage(db, spec, lambda c: dependency_steps(c, spec, deps), hook=hook)
        assert fired == [(i, stmt)] and result.outcome == Outcome.FAILED, (prefix, result.error)
    result = run_stage(db, spec, lambda c: dependency_steps(c, spec, deps))
    assert result.ok, result.error
    assert len(result.steps) < len(first)  # resumed, not restarted
    with db.connect() as conn:
        check_final(conn, n, spec)
        leftovers = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conname LIKE 'pgparts%' UNION ALL"
            " SELECT relname FROM pg_class WHERE relname LIKE 'pgparts%'").fetchall()
        assert leftovers == []


def test_index_equal_to_the_new_key_is_not_built_again(db, capsys):
    """An index with exactly the new primary key's columns is served by the key's index: it is
    not built (said in the notes); one that differs in order, direction or predicate, or that
    carries a comment, is."""
    from tui.cli import main

    db.execute(
        "CREATE TABLE public.t (id bigserial PRIMARY KEY, k int NOT NULL,"
        " ts timestamptz NOT NULL, note text);"
        "INSERT INTO public.t (k, ts, note) SELECT i % 7, timestamptz '2020-01-01 00:00+00'"
        " + i * interval '1 day', CASE WHEN i % 2 = 0 THEN 'x' END"
        " FROM generate_series(1, 60) i;"
        "CREATE INDEX t_same ON public.t (k, ts);"
        "CREATE INDEX t_desc ON public.t (k, ts DESC);"
        "CREATE INDEX t_partial ON public.t (k, ts) WHERE note IS NOT NULL;"
        "CREATE INDEX t_commented ON public.t (k, ts);"
        "COMMENT ON INDEX public.t_commented IS 'used by the nightly report';"
        "CREATE INDEX t_ts_k ON public.t (ts, k)")
    args = ("migrate", "public.t", "--by", "ts", "--key", "k,ts", "--interval", "year",
            "-d", db.dsn)
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "index 't_same' has the new primary key's columns" in out
    assert "t_desc' has" not in out and "t_commented' has" not in out
    assert main([*args, "--apply", "--yes"]) == 0
    capsys.readouterr()
    with db.connect() as conn:
        names = {r[0] for r in conn.execute(
            "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = 'public.t'::regclass").fetchall()}
        comment = conn.execute("SELECT obj_description('public.t_commented'::regclass,"
                               " 'pg_class')").fetchone()[0]
    assert names == {"t_pkey", "t_desc", "t_partial", "t_commented", "t_ts_k", "t_id_idx"}, names
    assert comment == "used by the nightly report"
