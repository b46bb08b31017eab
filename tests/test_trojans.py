"""CVE-2018-1058: objects an application role plants in `public` never run with pgparts' rights.

The database's search_path puts `public` before `pg_catalog`, as some installations do. The role
`app` may create objects in `public` and plants functions and operators named like the catalog's
(`pg_get_expr`, `=`, ...). Each one tries `ALTER ROLE app SUPERUSER`, which succeeds only when a
superuser calls it, and then returns what the real one would, so nothing looks wrong. Every
command below runs as a superuser; afterwards `app` must still not be one.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tui.cli import main

from .test_plan_support import OLD_WEEKS, build_balances

# (name, argument types, return type) of catalog functions pgparts or its plans could call
_FUNCTIONS = [
    ("pg_get_expr", ["pg_node_tree", "oid"], "text"),
    ("pg_get_expr", ["pg_node_tree", "oid", "boolean"], "text"),
    ("pg_total_relation_size", ["regclass"], "bigint"),
    ("pg_relation_size", ["regclass"], "bigint"),
    ("pg_table_size", ["regclass"], "bigint"),
    ("pg_indexes_size", ["regclass"], "bigint"),
    ("format_type", ["oid", "integer"], "text"),
    ("quote_ident", ["text"], "text"),
    ("pg_get_indexdef", ["oid"], "text"),
    ("pg_get_indexdef", ["oid", "integer", "boolean"], "text"),
    ("pg_get_partkeydef", ["oid"], "text"),
    ("pg_get_constraintdef", ["oid"], "text"),
    ("pg_get_constraintdef", ["oid", "boolean"], "text"),
    ("obj_description", ["oid", "name"], "text"),
    ("obj_description", ["oid"], "text"),
    ("to_regclass", ["text"], "regclass"),
]
# `=` on the types catalog queries compare: oids, names, text and relkind-like "char" columns
_OPERATORS = ["oid", "name", "text", '"char"']

_TRAP = """
BEGIN
    BEGIN
        ALTER ROLE app SUPERUSER;
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;  -- called by someone who is not a superuser: stay quiet
    END;
    RETURN {body};
END
"""


def _plant(dsn: str) -> None:
    """As `app`: shadow catalog functions and `=` in public."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SET ROLE app")
        for name, args, returns in _FUNCTIONS:
            params = sql.SQL(", ").join(sql.SQL(a) for a in args)
            call = sql.SQL("{}({})").format(
                sql.Identifier("pg_catalog", name),
                sql.SQL(", ").join(sql.SQL(f"${n + 1}") for n in range(len(args))))
            body = sql.SQL(_TRAP).format(body=call).as_string(c)
            c.execute(sql.SQL(
                "CREATE FUNCTION {fn}({params}) RETURNS {ret} LANGUAGE plpgsql AS {body}"
            ).format(fn=sql.Identifier("public", name), params=params, ret=sql.SQL(returns),
                     body=sql.Literal(body)))
        for typ in _OPERATORS:
            fn = sql.Identifier("public", f"trap_eq_{typ.strip(chr(34))}")
            body = sql.SQL(_TRAP).format(body=sql.SQL("$1 OPERATOR(pg_catalog.=) $2"))
            c.execute(sql.SQL(
                "CREATE FUNCTION {fn}({t}, {t}) RETURNS boolean LANGUAGE plpgsql AS {body}"
            ).format(fn=fn, t=sql.SQL(typ), body=sql.Literal(body.as_string(c))))
            c.execute(sql.SQL(
                "CREATE OPERATOR public.= (LEFTARG = {t}, RIGHTARG = {t}, FUNCTION = {fn})"
            ).format(t=sql.SQL(typ), fn=fn))


def _app_is_superuser(dsn: str) -> bool:
    # the check itself must not spring the trap: a catalog-only search_path
    with psycopg.connect(dsn, autocommit=True, options="-c search_path=pg_catalog") as c:
        row = c.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'app'").fetchone()
    assert row is not None
    return bool(row[0])


@pytest.fixture
def trapped(db):
    """A database with account_balances, search_path = public, pg_catalog and planted traps."""
    with db.connect() as conn:
        build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=20)
        conn.execute("ANALYZE public.account_balances")
    with psycopg.connect(db.dsn, autocommit=True, options="-c search_path=pg_catalog") as c:
        c.execute("DROP ROLE IF EXISTS app")
        c.execute("CREATE ROLE app NOLOGIN")
        c.execute("GRANT CREATE, USAGE ON SCHEMA public TO app")
        c.execute(sql.SQL("ALTER DATABASE {} SET search_path = public, pg_catalog").format(
            sql.Identifier(db.name)))
    _plant(db.dsn)
    assert not _app_is_superuser(db.dsn)
    yield db
    with psycopg.connect(db.server.conninfo(), autocommit=True,
                         options="-c search_path=pg_catalog") as c:
        c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db.name)))
        c.execute("DROP ROLE app")


@pytest.mark.parametrize(
    "argv",
    [
        ("tree",),
        ("tree", "--json", "--exact-sizes"),
        ("check",),
        ("consolidate", "account_balances", "status"),
        ("consolidate", "account_balances", "--older-than", "1 week", "--dry-run"),
        ("consolidate", "account_balances", "--older-than", "1 week", "--sql"),
        ("explain", "SELECT * FROM public.account_balances"),
        ("explain", "--json", "SELECT * FROM public.account_balances"),
    ],
    ids=["tree", "tree-json-exact", "check", "status", "dry-run", "sql", "explain",
         "explain-json"],
)
def test_planted_objects_never_run_as_the_operator(trapped, argv, capsys):
    status = main([*argv, "-d", trapped.dsn])
    out, err = capsys.readouterr()
    assert status in (0, 1, 2), err
    assert "Traceback" not in err
    assert out  # the command did its work
    assert not _app_is_superuser(trapped.dsn), f"pgparts {' '.join(argv)} ran app's code"


def test_the_trap_is_armed(trapped):
    """The same query without pgparts' session search_path does run app's `=`: the assertions
    above are not vacuous."""
    with psycopg.connect(trapped.dsn, autocommit=True) as c:
        assert c.execute("SHOW search_path").fetchone()[0] == "public, pg_catalog"
        c.execute("SELECT count(*) FROM pg_class WHERE oid = 'pg_class'::regclass")
    assert _app_is_superuser(trapped.dsn)
