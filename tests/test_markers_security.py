"""Plan markers cannot be forged: a role that can only create objects in a schema must not get
the operator (a superuser) to run its code, or to drop its tables, through pgparts.

Every attack here is done by an unprivileged role through SET ROLE on a raw connection; the
operator then runs pgparts' status, dry run, SQL export and apply. Afterwards the role must still
not be a superuser (rolsuper), no shell command must have run, and its objects must be intact.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tui.cli import main
from tui.core.plans import PlanRunner
from tui.core.plans.consolidate import build_consolidation_plan, consolidation_status
from tui.core.plans.hashing import extended_hash_supported

from .test_plan_support import OLD_WEEKS, build_balances, user_tables

COLUMNS = ('"timestamp" timestamptz, account_address varchar(255), usd_value numeric(18,2),'
           " activity_id text, data jsonb")


@pytest.fixture
def attacker(db) -> Iterator[str]:
    """A role with CREATE on schema public (and on the database), nothing else."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    db.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    dbname = db.query("SELECT current_database()")[0][0]
    db.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
        sql.Identifier(dbname), sql.Identifier(role)))
    yield role
    with contextlib.suppress(psycopg.Error):
        db.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def as_role(db, role: str) -> psycopg.Connection:
    conn = psycopg.connect(db.dsn, autocommit=True)
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    return conn


def is_superuser(db, role: str) -> bool:
    return db.query("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))[0][0]


def evil_function(conn: psycopg.Connection, role: str, witness: Path) -> None:
    """A function that, run by a superuser, runs a shell command and makes `role` superuser."""
    body = sql.SQL(
        "BEGIN\n"
        "  EXECUTE {copy};\n"
        "  EXECUTE {alter};\n"
        "  RETURN now();\n"
        "END").format(
        copy=sql.Literal(sql.SQL("COPY (SELECT 1) TO PROGRAM {}").format(
            sql.Literal(f"touch {witness}")).as_string(conn)),
        alter=sql.Literal(sql.SQL("ALTER ROLE {} SUPERUSER").format(
            sql.Identifier(role)).as_string(conn)))
    conn.execute(sql.SQL(
        "CREATE FUNCTION public.evil() RETURNS timestamptz LANGUAGE plpgsql AS {}").format(
        sql.Literal(body.as_string(conn))))


def forged_marker(parent_oid: int, bound: str, replacement: str) -> str:
    return "pgparts:" + json.dumps({"role": "original", "parent_oid": parent_oid,
                                    "replacement": replacement, "bound": bound})


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def parent_oid(db) -> int:
    return db.query("SELECT 'public.account_balances'::regclass::oid")[0][0]


def bound_of(db, name: str) -> str:
    return db.query("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = %s",
                    (name,))[0][0]


def test_forged_original_view_is_never_read(db, attacker, capsys, tmp_path):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=20)
    witness = tmp_path / "shell-ran"
    with as_role(db, attacker) as app:
        evil_function(app, attacker, witness)
        app.execute("CREATE VIEW public.evil_original AS SELECT public.evil() AS \"timestamp\","
                    " 'x'::varchar(255) AS account_address, 1::numeric(18,2) AS usd_value,"
                    " 'a'::text AS activity_id, '{}'::jsonb AS data")
        app.execute(sql.SQL("COMMENT ON VIEW public.evil_original IS {}").format(sql.Literal(
            forged_marker(parent_oid(db), bound_of(db, b.weeks[0]), "account_balances_x"))))
    d = ("-d", db.dsn)
    status, out, _ = cli(capsys, "consolidate", "account_balances", "status", *d)
    assert status == 0
    assert "ignored evil_original: not provably pgparts' own (owner " + attacker in out
    for extra in (["--dry-run"], ["--dry-run", "--read-only"], ["--dry-run", "--json"],
                  ["--sql"], ["--weeks", b.weeks[1], "--dry-run"]):
        status, out, err = cli(capsys, "consolidate", "account_balances", *extra, *d)
        assert status == 0, err
        assert "evil_original" not in out.split("SQL:")[-1].replace(
            "ignored evil_original", "")  # never in a statement
    assert not is_superuser(db, attacker)
    assert not witness.exists()
    # an apply (as the superuser) neither reads nor drops it
    status, _out, err = cli(capsys, "consolidate", "account_balances", "--apply", "--yes",
                            "--weeks", b.weeks[0], *d)
    assert status == 0, err
    assert not is_superuser(db, attacker)
    assert not witness.exists()
    assert db.query("SELECT count(*) FROM pg_class WHERE relname = 'evil_original'") == [(1,)]


def test_forged_original_table_is_not_dropped_by_apply(db, attacker, capsys):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=20)
    d = ("-d", db.dsn)
    # a first week consolidated: its bound now belongs to a partition pgparts built
    assert cli(capsys, "consolidate", "account_balances", "--apply", "--yes", "--weeks",
               b.weeks[0], *d)[0] == 0
    bound = bound_of(db, f"{b.weeks[0]}_consolidated")
    with as_role(db, attacker) as app:
        app.execute(sql.SQL("CREATE TABLE public.precious ({})").format(sql.SQL(COLUMNS)))
        app.execute("INSERT INTO public.precious VALUES (now(), 'keep', 1, 'a', '{}')")
        app.execute(sql.SQL("COMMENT ON TABLE public.precious IS {}").format(sql.Literal(
            forged_marker(parent_oid(db), bound, f"{b.weeks[0]}_consolidated"))))
    status, out, _ = cli(capsys, "consolidate", "account_balances", "status", *d)
    assert "ignored precious: not provably pgparts' own" in out
    assert "detached original" not in out
    with db.connect() as conn:
        plan = build_consolidation_plan(conn, "account_balances", weeks=[b.weeks[1]])
    assert not any("precious" in s.title for s in plan.steps)
    status, _out, err = cli(capsys, "consolidate", "account_balances", "--apply", "--yes",
                            "--weeks", b.weeks[1], *d)
    assert status == 0, err
    assert db.query("SELECT count(*) FROM public.precious") == [(1,)]


def test_a_pgparts_schema_created_by_someone_else_is_refused(db, attacker, capsys, tmp_path):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=20)
    witness = tmp_path / "shell-ran"
    with as_role(db, attacker) as app:
        evil_function(app, attacker, witness)
        app.execute("CREATE SCHEMA pgparts")
        app.execute(
            "CREATE TABLE pgparts.plan_objects (objid oid, role text, schema_name text,"
            " name text, parent_oid oid, source_oid oid, source_name text, owner oid,"
            " bound text, digest text, replacement text, state text, note text, plan_id text,"
            " created_at timestamptz DEFAULT now(), PRIMARY KEY (role, objid))")
        app.execute(sql.SQL("CREATE TABLE public.bait ({})").format(sql.SQL(COLUMNS)))
        oid = app.execute("SELECT 'public.bait'::regclass::oid").fetchone()[0]
        owner = app.execute("SELECT relowner FROM pg_class WHERE oid = %s", (oid,)).fetchone()[0]
        app.execute(
            "INSERT INTO pgparts.plan_objects (objid, role, schema_name, name, parent_oid,"
            " source_oid, owner, bound, state) VALUES (%s, 'original', 'public', 'bait', %s, %s,"
            " %s, %s, 'detached')",
            (oid, parent_oid(db), oid, owner, bound_of(db, b.weeks[0])))
        app.execute("CREATE FUNCTION public.evil_trg() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$BEGIN PERFORM public.evil(); RETURN NEW; END$$")
        app.execute("CREATE TRIGGER t BEFORE INSERT OR UPDATE OR DELETE ON pgparts.plan_objects"
                    " FOR EACH ROW EXECUTE FUNCTION public.evil_trg()")
    d = ("-d", db.dsn)
    status, out, _ = cli(capsys, "consolidate", "account_balances", "status", *d)
    assert status == 0
    assert f"registry (schema pgparts) is not used: schema pgparts is owned by {attacker}" in out
    assert "bait" not in out.replace("not used", "")
    status, out, err = cli(capsys, "consolidate", "account_balances", "--dry-run", *d)
    assert status == 0 and "bait" not in out
    # apply refuses to write into it: the build's first statement stops the transaction
    status, out, err = cli(capsys, "consolidate", "account_balances", "--apply", "--yes", *d)
    assert status == 1
    assert "pgparts refuses to use its registry: schema pgparts is owned by" in err
    assert not is_superuser(db, attacker)
    assert not witness.exists()
    with db.connect() as conn:
        assert b.weeks[0] in user_tables(conn, "public")  # nothing changed
        assert f"{b.weeks[0]}_consolidated" not in user_tables(conn, "public")
        assert "bait" in user_tables(conn, "public")


def test_a_registry_others_may_write_is_refused(db, attacker, capsys):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=20)
    d = ("-d", db.dsn)
    assert cli(capsys, "consolidate", "account_balances", "--apply", "--yes", "--weeks",
               b.weeks[0], *d)[0] == 0
    with db.connect() as conn:  # created by the apply, owned by the operator, no grants
        owner, acl = conn.execute(
            "SELECT pg_get_userbyid(nspowner), nspacl FROM pg_namespace"
            " WHERE nspname = 'pgparts'").fetchone()
        assert owner == conn.info.user and acl is None
        assert conn.execute("SELECT relacl FROM pg_class WHERE oid ="
                            " 'pgparts.plan_objects'::regclass").fetchone()[0] is None
        st = consolidation_status(conn, "account_balances")
        assert st.registry.trusted and st.weeks[0].status == "CONSOLIDATED"
    db.execute(sql.SQL("GRANT INSERT ON pgparts.plan_objects TO {}").format(
        sql.Identifier(attacker)))
    status, out, _ = cli(capsys, "consolidate", "account_balances", "status", *d)
    assert "other roles may write to pgparts.plan_objects" in out
    # without the registry nothing is provably consolidated: the partition is PLAIN
    assert f"{b.weeks[0]}_consolidated" in out and "PLAIN" in out


def test_forged_change_counter_trigger_is_left_alone(db, attacker, capsys):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=20)
        # a partition the attacker owns (created for it by the owner of the parent)
        conn.execute("CREATE TABLE public.app_week (LIKE public.account_balances)")
        conn.execute(sql.SQL("ALTER TABLE public.app_week OWNER TO {}").format(
            sql.Identifier(attacker)))
        conn.execute("ALTER TABLE public.account_balances ATTACH PARTITION public.app_week"
                     " FOR VALUES FROM ('2023-01-01') TO ('2023-01-08')")
    week_oid = db.query("SELECT %s::regclass::oid", (f"public.{b.weeks[0]}",))[0][0]
    with as_role(db, attacker) as app:
        # named like the counter of the week pgparts is about to consolidate
        app.execute(sql.SQL(
            "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RETURN NEW; END$$").format(
            sql.Identifier("public", f"pgparts_count_{week_oid + 1}")))
        app.execute(sql.SQL(
            "CREATE TRIGGER pgparts_changes BEFORE INSERT ON public.app_week"
            " FOR EACH ROW EXECUTE FUNCTION {}()").format(
            sql.Identifier("public", f"pgparts_count_{week_oid + 1}")))
    with db.connect() as conn:
        st = consolidation_status(conn, "account_balances")
        assert st.counters == []
        assert any("ignored the trigger on app_week" in line for line in st.ignored)
        plan = build_consolidation_plan(conn, "account_balances")
    assert not any("app_week" in s.title for s in plan.steps)
    result = PlanRunner(db.target, plan).run()
    assert result.ok, (result.error, result.state)
    assert db.query("SELECT count(*) FROM pg_trigger WHERE tgname = 'pgparts_changes'"
                    " AND tgrelid = 'public.app_week'::regclass") == [(1,)]
    assert db.query("SELECT count(*) FROM pg_proc WHERE proname = %s",
                    (f"pgparts_count_{week_oid + 1}",)) == [(1,)]


TYPES = ["jsonb", "json", "point", "int[]", "json[]", "text", "varchar(4)", "numeric",
         "timestamptz", "bytea", "uuid", "inet", "int4range", "tsvector", "mood", "pair",
         "jpair", "dj", "di", "pair[]", "box"]


def test_hash_choice_from_the_catalog_matches_what_the_server_does(db):
    """The plan decides from the catalog whether hash_record_extended works for the columns; it
    must agree with the server (probed here, in the test, never at plan time)."""
    with db.connect() as conn:
        if conn.info.server_version < 140000:
            pytest.skip("hash_record_extended is PG 14+")
        conn.execute("CREATE TYPE public.mood AS ENUM ('a', 'b')")
        conn.execute("CREATE TYPE public.pair AS (a int, b text)")
        conn.execute("CREATE TYPE public.jpair AS (a int, b json)")
        conn.execute("CREATE DOMAIN public.dj AS json")
        conn.execute("CREATE DOMAIN public.di AS int CHECK (VALUE > 0)")
        for t in TYPES:
            name = t if t in ("mood", "pair", "jpair", "dj", "di") else t
            qualified = f"public.{name}" if name in ("mood", "pair", "jpair", "dj", "di") \
                else ("public.pair[]" if t == "pair[]" else t)
            oid = conn.execute(sql.SQL("SELECT {}::regtype::oid").format(
                sql.Literal(qualified))).fetchone()[0]
            try:
                with conn.transaction():
                    conn.execute(sql.SQL(
                        "SELECT hash_record_extended(ROW(NULL::{}), 0)").format(
                        sql.SQL(qualified)))
                works = True
            except psycopg.errors.UndefinedFunction:
                works = False
            assert extended_hash_supported(conn, [oid]) == works, t


def test_status_and_dry_run_read_no_row(db, capsys):
    """Planning reads the catalog only: no scan of any user table (sequential or index) by the
    status, the dry run or the SQL export, with a detached original and a kept copy around."""
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=20, default_partition=True)
    d = ("-d", db.dsn)
    assert cli(capsys, "consolidate", "account_balances", "--apply", "--yes", "--keep-detached",
               "--weeks", b.weeks[0], *d)[0] == 0
    # pgparts' own registry is read (a trusted table); nothing else is
    count = ("SELECT schemaname || '.' || relname, seq_scan + coalesce(idx_scan, 0)"
             " FROM pg_stat_user_tables WHERE schemaname <> 'pgparts' ORDER BY 1")

    def scans() -> list:
        return db.query_stats(count)  # the apply's sessions' scans are counted before `before`

    before = scans()
    for argv in (["status"], ["--dry-run"], ["--sql"], ["--dry-run", "--json"]):
        assert cli(capsys, "consolidate", "account_balances", *argv, *d)[0] == 0
    assert scans() == before
