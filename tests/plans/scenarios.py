"""Small fixture scenarios for the plan kinds (hundreds of rows), with hostile names: quotes,
spaces, semicolons and non-ASCII letters in the schema, the table, partitions and indexes.

`SCENARIOS[kind]` builds the problem the kind fixes on a connection and returns the target
table's display spec; `fixed(conn)` says whether the problem is gone (per `pgparts check`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import FindingsConfig
from tui.core.findings import check_forest
from tui.core.names import display_name

SCHEMA = 'sé "q; x'
TABLE = 'Meß "t; 1"'
LEAVES = ['part ";0é', 'part ";1é', 'hash ";0é', 'hash ";1é']
MID = 'part ";2é'
INDEX = 'ix ";é v'
ROWS = 300


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, name)


def spec() -> str:
    return display_name(SCHEMA, TABLE)


def reset(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    conn.execute("DROP SCHEMA IF EXISTS pgparts CASCADE")


def base(conn: psycopg.Connection, *, index_everywhere: bool = True) -> None:
    """t (id, k, v) RANGE on k: two plain partitions and one HASH-partitioned (two leaves),
    autovacuum off on the leaves so none is analyzed behind the test's back, ROWS rows."""
    reset(conn)
    t = ident(TABLE)
    off = sql.SQL(" WITH (autovacuum_enabled = false)")
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("CREATE TABLE {} (id int NOT NULL, k int NOT NULL, v text,"
                         " PRIMARY KEY (id, k)) PARTITION BY RANGE (k)").format(t))
    for i, name in enumerate(LEAVES[:2]):
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}){}")
                     .format(ident(name), t, sql.Literal(i * 100), sql.Literal(i * 100 + 100),
                             off))
    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (200) TO (300)"
                         " PARTITION BY HASH (id)").format(ident(MID), t))
    for r, name in enumerate(LEAVES[2:]):
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS 2,"
                             " REMAINDER {}){}").format(ident(name), ident(MID),
                                                       sql.Literal(r), off))
    conn.execute(sql.SQL("INSERT INTO {} SELECT g, g, 'v' || g FROM generate_series(0, {}) g")
                 .format(t, sql.Literal(ROWS - 1)))


def codes(conn: psycopg.Connection) -> set[str]:
    forest = load_forest(conn)
    root = forest.find(spec())
    oids = {n.oid for n in root.walk()}
    return {f.code for f in check_forest(forest, FindingsConfig())
            if f.table_oid in oids or any(o in oids for o in f.object_oids)}


def count_rows(conn: psycopg.Connection) -> int:
    return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(TABLE)))
               .fetchone()[0])


# -- the problems ---------------------------------------------------------------------------
def never_analyzed(conn: psycopg.Connection, dsn: str) -> None:
    base(conn)


def index_problems(conn: psycopg.Connection, dsn: str) -> None:
    """An index created ON ONLY the parent (missing on every partition, the sub-partitioned one
    included) and an invalid index on a leaf (a unique build that failed on duplicates that
    are gone since)."""
    base(conn)
    conn.execute(sql.SQL("CREATE INDEX {} ON ONLY {} (v)").format(
        sql.Identifier(INDEX), ident(TABLE)))
    conn.execute(sql.SQL("INSERT INTO {} VALUES (1000, 0, 'v0')").format(ident(TABLE)))
    with psycopg.connect(dsn, autocommit=True) as c:
        try:
            c.execute(sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} (v)").format(
                sql.Identifier('bad ";é'), ident(LEAVES[0])))
        except psycopg.errors.UniqueViolation:
            pass
    conn.execute(sql.SQL("DELETE FROM {} WHERE id = 1000").format(ident(TABLE)))


def unique_missing(conn: psycopg.Connection, dsn: str) -> None:
    """A unique constraint added ON ONLY the parent: its index is missing on every partition."""
    base(conn)
    conn.execute(sql.SQL("ALTER TABLE ONLY {} ADD CONSTRAINT {} UNIQUE (k, id)").format(
        ident(TABLE), sql.Identifier('uq ";é')))


def detach_pending(conn: psycopg.Connection, dsn: str) -> None:
    """p1's DETACH ... CONCURRENTLY cancelled while it waited for an older transaction."""
    base(conn)
    holder = psycopg.connect(dsn)
    holder.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(TABLE)))  # keeps a snapshot
    box: dict[str, BaseException] = {}

    def detach() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SET application_name = 'pgparts-test-detach'")
            try:
                c.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
                    ident(TABLE), ident(LEAVES[1])))
            except psycopg.Error as exc:
                box["e"] = exc

    th = threading.Thread(target=detach)
    th.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as watch:
            for _ in range(200):
                row = watch.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name ="
                    " 'pgparts-test-detach' AND wait_event_type IS NOT NULL"
                    " AND state = 'active'").fetchone()
                if row:
                    watch.execute("SELECT pg_cancel_backend(%s)", (row[0],))
                    break
                time.sleep(0.05)
        th.join(10)
    finally:
        holder.close()
    assert isinstance(box.get("e"), psycopg.errors.QueryCanceled), box


def week_start(today: date | None = None) -> date:
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=(today.weekday() + 1) % 7)  # Sunday to Sunday, UTC


WEEK = 'wk ";é_'
OLD_WEEKS_AGO = (20, 19, 14, 2)  # with 12 weeks of retention: the first three expire
RETENTION = timedelta(weeks=12)


def time_base(conn: psycopg.Connection, *, default: bool) -> None:
    """t (id, ts, v) RANGE on ts by week (Sunday to Sunday, UTC): four old plain weeks and the
    current week HASH-partitioned by id (two leaves), optionally a DEFAULT holding rows from
    before the first week; ROWS rows."""
    reset(conn)
    t = ident(TABLE)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("CREATE TABLE {} (id int NOT NULL, ts timestamptz NOT NULL, v text,"
                         " PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)").format(t))
    conn.execute(sql.SQL("CREATE INDEX {} ON {} (v)").format(sql.Identifier(INDEX), t))
    current = week_start()
    starts = [current - timedelta(weeks=n) for n in OLD_WEEKS_AGO] + [current]
    for start in starts:
        name = f"{WEEK}{start:%Y_%m_%d}"
        by = sql.SQL(" PARTITION BY HASH (id)") if start == current else sql.SQL("")
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}){}")
                     .format(ident(name), t, sql.Literal(f"{start} 00:00+00"),
                             sql.Literal(f"{start + timedelta(days=7)} 00:00+00"), by))
        if start == current:
            for r in range(2):
                conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH"
                                     " (MODULUS 2, REMAINDER {})").format(
                    ident(f"{name}_h{r}"), ident(name), sql.Literal(r)))
    if default:
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
            ident('dé f"ault'), t))
    # rows in every week (the current one from its Sunday, in the past), and when there is a
    # DEFAULT, a tenth of them in it (weeks before the first partition)
    homes = [*starts, *([starts[0] - timedelta(weeks=4)] if default else [])]
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(t), [
            (g, datetime(h.year, h.month, h.day, tzinfo=UTC) + timedelta(minutes=g),
             f"v{g}")
            for g in range(ROWS) for h in [homes[g % len(homes)]]])


def no_future(conn: psycopg.Connection, dsn: str) -> None:
    time_base(conn, default=True)


def expired_weeks(conn: psycopg.Connection, dsn: str) -> None:
    time_base(conn, default=False)


def retention_done(conn: psycopg.Connection) -> bool:
    """No attached partition of t ends before the retention cutoff."""
    root = load_forest(conn).find(spec())
    cutoff = datetime.now(UTC) - RETENTION
    for c in root.children:
        if c.bound is not None and c.bound.kind == "range":
            hi = c.bound.upper[0].as_datetime()
            if hi is not None and hi <= cutoff:
                return False
    return True


@dataclass(frozen=True)
class Scenario:
    build: Callable[[psycopg.Connection, str], None]
    codes: frozenset[str]  # the findings it raises, which the kind's plan removes


SCENARIOS: dict[str, Scenario] = {
    "analyze": Scenario(never_analyzed, frozenset({"never_analyzed"})),
    "finalize_detach": Scenario(detach_pending, frozenset({"detach_pending"})),
    "index_fix": Scenario(index_problems, frozenset({"index_missing", "index_invalid"})),
    "create_ahead": Scenario(no_future, frozenset({"no_future_partition"})),
}


# -- moves: split, drain-default, fill-gaps -------------------------------------------------
SPLIT_SOURCE = LEAVES[1]  # [100, 200)
SPLIT_NEW = 'part ";1é b'
DEFAULT = 'dé f "x'
REF = 'ré f; "y'


def with_default_and_ref(conn: psycopg.Connection, dsn: str) -> None:
    """base() plus a DEFAULT partition holding rows (k from -250 to -1, 300 to 549, NULL keys
    cannot exist: k is NOT NULL) and a table referencing the parent's key (ON DELETE CASCADE,
    so a row deleted by a move would take its referencing rows along)."""
    base(conn)
    t = ident(TABLE)
    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(ident(DEFAULT), t))
    conn.execute(sql.SQL("INSERT INTO {} SELECT g + 1000, g, 'd' || g FROM"
                         " generate_series(-250, -1) g").format(t))
    conn.execute(sql.SQL("INSERT INTO {} SELECT g + 1000, g, 'd' || g FROM"
                         " generate_series(300, 549) g").format(t))
    conn.execute(sql.SQL("CREATE TABLE {} (rid int PRIMARY KEY, id int, k int, CONSTRAINT {}"
                         " FOREIGN KEY (id, k) REFERENCES {} ON DELETE CASCADE)").format(
        ident(REF), sql.Identifier('fk ";é'), t))
    conn.execute(sql.SQL("INSERT INTO {} SELECT row_number() OVER (ORDER BY k), id, k FROM {}"
                         " WHERE k % 3 = 0").format(ident(REF), t))
    conn.execute(sql.SQL("ANALYZE {}").format(t))


def leftovers(conn: psycopg.Connection) -> list[str]:
    """Anything a move leaves behind: triggers, logs, helper CHECKs, NOT VALID keys, detached
    sources, registry entries."""
    out = [r[0] for r in conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'pgparts%'").fetchall()]
    out += [r[0] for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relname LIKE 'pgparts\\_%' AND relkind = 'r'"
        " AND relnamespace IS DISTINCT FROM to_regnamespace('pgparts')"
        " OR relname LIKE 'pgparts_log%' OR relname LIKE 'pgparts_copied%'").fetchall()]
    out += [r[0] for r in conn.execute(
        "SELECT conname FROM pg_constraint WHERE conname LIKE 'pgparts%'"
        " OR NOT convalidated AND conparentid = 0"
    ).fetchall()]
    if conn.execute("SELECT to_regclass('pgparts.plan_objects') IS NOT NULL").fetchone()[0]:
        out += [r[0] for r in conn.execute(
            "SELECT role FROM pgparts.plan_objects WHERE role LIKE 'move%'").fetchall()]
    return out


@dataclass(frozen=True)
class MoveScenario:
    build: Callable[[psycopg.Connection, str], None]
    values: dict  # the kind's request
    fixed: Callable[[psycopg.Connection], bool]
    target: str = ""  # the table the kind acts on (default: spec())


def _split_done(conn: psycopg.Connection) -> bool:
    forest = load_forest(conn)
    root = forest.find(spec())
    bounds = {c.name: c.bound_text for c in root.children}
    return (bounds.get(SPLIT_SOURCE) == "FOR VALUES FROM (100) TO (150)"
            and bounds.get(SPLIT_NEW) == "FOR VALUES FROM (150) TO (200)")


def default_rows(conn: psycopg.Connection) -> int:
    return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(DEFAULT)))
               .fetchone()[0])


GAP_NEW = f"{TABLE}_p100"  # [100, 200): named as the newest partition's pattern gives


def with_gap_and_default_rows(conn: psycopg.Connection, dsn: str) -> None:
    """base() without its partition [100, 200) (a hole), and a DEFAULT holding rows of the hole
    (k 100 to 199) and 20 rows of no hole (k 300 to 319), which stay in it."""
    base(conn)
    t = ident(TABLE)
    conn.execute(sql.SQL("DROP TABLE {}").format(ident(LEAVES[1])))
    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(ident(DEFAULT), t))
    conn.execute(sql.SQL("INSERT INTO {} SELECT g + 1000, g, 'g' || g FROM"
                         " generate_series(100, 199) g").format(t))
    conn.execute(sql.SQL("INSERT INTO {} SELECT g + 1000, g, 'd' || g FROM"
                         " generate_series(300, 319) g").format(t))


def _gap_filled(conn: psycopg.Connection) -> bool:
    bounds = {c.name: c.bound_text for c in load_forest(conn).find(spec()).children}
    return (bounds.get(GAP_NEW) == "FOR VALUES FROM (100) TO (200)"
            and "range_gap" not in codes(conn) and default_rows(conn) == 20)


MOVE_SCENARIOS: dict[str, MoveScenario] = {
    "split": MoveScenario(with_default_and_ref,
                          {"partition": SPLIT_SOURCE, "at": ["150"], "name": [SPLIT_NEW]},
                          _split_done),
    "drain_default": MoveScenario(with_default_and_ref, {},
                                  lambda conn: default_rows(conn) == 0),
    "fill_gaps": MoveScenario(with_gap_and_default_rows, {}, _gap_filled),
}


# -- moves of several partitions: merge, rebound, move-values --------------------------------
MERGED = 'part ";01 é'
LIST_TABLE = 'li "st; é'
LIST_A = 'lé "a; n'  # 'a', 'b' and NULL
LIST_C = 'lé "c; d'  # 'c', 'd'
LIST_DEFAULT = 'lé "def'  # everything else ('e')
LIST_NEW = 'lé "new; b'


def _bounds(conn: psycopg.Connection, table: str = TABLE) -> dict[str, str]:
    return {c.name: c.bound_text for c in load_forest(conn).find(
        display_name(SCHEMA, table)).children}


def merged_plain(conn: psycopg.Connection) -> bool:
    bounds = _bounds(conn)
    return (bounds.get(MERGED) == "FOR VALUES FROM (0) TO (200)"
            and LEAVES[0] not in bounds and LEAVES[1] not in bounds)


def _rebound_done(conn: psycopg.Connection) -> bool:
    bounds = _bounds(conn)
    return (bounds.get(LEAVES[0]) == "FOR VALUES FROM (0) TO (130)"
            and bounds.get(LEAVES[1]) == "FOR VALUES FROM (130) TO (200)")


def list_spec() -> str:
    return display_name(SCHEMA, LIST_TABLE)


def with_list_and_null(conn: psycopg.Connection, dsn: str) -> None:
    """A LIST-partitioned table (id, r, v) whose first partition holds NULL, 'a' and 'b', the
    second 'c' and 'd', a DEFAULT the rest. A key column holding NULL cannot be in a primary
    key, so each partition has a unique index of its own on id (what the replay orders changes
    by, with r). ROWS rows."""
    reset(conn)
    t = ident(LIST_TABLE)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("CREATE TABLE {} (id int NOT NULL, r text, v text)"
                         " PARTITION BY LIST (r)").format(t))
    conn.execute(sql.SQL("CREATE INDEX {} ON {} (v)").format(sql.Identifier(INDEX), t))
    for name, bound in ((LIST_A, "IN ('a', 'b', NULL)"), (LIST_C, "IN ('c', 'd')"),
                        (LIST_DEFAULT, "DEFAULT")):
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
            ident(name), t, sql.SQL("DEFAULT" if bound == "DEFAULT" else
                                    "FOR VALUES " + bound)))
        conn.execute(sql.SQL("CREATE UNIQUE INDEX {} ON {} (id)").format(
            sql.Identifier(f"{name} id"), ident(name)))
    conn.execute(sql.SQL(
        "INSERT INTO {} SELECT g, (ARRAY['a', 'b', NULL, 'c', 'd', 'e'])[g % 6 + 1], 'v' || g"
        " FROM generate_series(0, {}) g").format(t, sql.Literal(ROWS - 1)))
    conn.execute(sql.SQL("ANALYZE {}").format(t))


def list_values(conn: psycopg.Connection, name: str) -> set[str | None]:
    from tui.core.bounds import parse_bound

    bound = parse_bound(_bounds(conn, LIST_TABLE).get(name))
    if bound is None:
        return set()
    return {None if v.special == "NULL" else v.text for v in bound.values}


def _values_moved(conn: psycopg.Connection) -> bool:
    return (list_values(conn, LIST_A) == {"a"}
            and list_values(conn, LIST_C) == {"c", "d", "b", None})


MERGE_PLAIN = {"partitions": [LEAVES[1], LEAVES[0]], "name": MERGED}
MOVE_SCENARIOS["rebound"] = MoveScenario(
    with_default_and_ref, {"left": LEAVES[0], "right": LEAVES[1], "at": "130"}, _rebound_done)
MOVE_SCENARIOS["move_values"] = MoveScenario(
    with_list_and_null, {"from_partition": LIST_A, "to_partition": LIST_C,
                         "values": ["NULL,b"]}, _values_moved, list_spec())


# -- sub-partitioned weeks: a week with 4 hash partitions, split and merged ------------------
HWEEK = 'wk ";é_'
HWEEKS = [date(2026, 1, 4) + timedelta(weeks=n) for n in range(3)]  # plain, hash, hash
HWEEK_MERGED = 'wk ";é_2026_01_11_2w'


def hweek(start: date) -> str:
    return f"{HWEEK}{start:%Y_%m_%d}"


def with_hash_weeks(conn: psycopg.Connection, dsn: str, *, extras: bool = True) -> None:
    """t (id, ts, v) RANGE on ts by week: one plain week, then two weeks each HASH-partitioned
    by id into 4 (`<week>_h0` .. `_h3`), an index on v; with `extras`, a DEFAULT and a table
    referencing the parent's key. ROWS rows over the three weeks."""
    reset(conn)
    t = ident(TABLE)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("CREATE TABLE {} (id int NOT NULL, ts timestamptz NOT NULL, v text,"
                         " PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)").format(t))
    conn.execute(sql.SQL("CREATE INDEX {} ON {} (v)").format(sql.Identifier(INDEX), t))
    for n, start in enumerate(HWEEKS):
        by = sql.SQL(" PARTITION BY HASH (id)") if n else sql.SQL("")
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}){}")
                     .format(ident(hweek(start)), t, sql.Literal(f"{start} 00:00+00"),
                             sql.Literal(f"{start + timedelta(days=7)} 00:00+00"), by))
        for r in range(4 if n else 0):
            conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH"
                                 " (MODULUS 4, REMAINDER {})").format(
                ident(f"{hweek(start)}_h{r}"), ident(hweek(start)), sql.Literal(r)))
    if extras:
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
            ident(DEFAULT), t))
    conn.execute(sql.SQL(
        "INSERT INTO {} SELECT g, timestamptz '2026-01-04 00:00+00' + g * interval '99 minutes',"
        " 'v' || g FROM generate_series(0, {}) g").format(t, sql.Literal(ROWS - 1)))
    if not extras:
        conn.execute(sql.SQL("ANALYZE {}").format(t))
        return
    conn.execute(sql.SQL("CREATE TABLE {} (rid int PRIMARY KEY, id int, ts timestamptz,"
                         " CONSTRAINT {} FOREIGN KEY (id, ts) REFERENCES {} ON DELETE CASCADE)"
                         ).format(ident(REF), sql.Identifier('fk ";é'), t))
    conn.execute(sql.SQL("INSERT INTO {} SELECT id, id, ts FROM {} WHERE id % 3 = 0").format(
        ident(REF), t))
    conn.execute(sql.SQL("ANALYZE {}").format(t))


def _hash_merged(conn: psycopg.Connection) -> bool:
    forest = load_forest(conn)
    root = forest.find(spec())
    kids = {c.name: c for c in root.children}
    merged = kids.get(HWEEK_MERGED)
    return (merged is not None and hweek(HWEEKS[1]) not in kids and hweek(HWEEKS[2]) not in kids
            and "2026-01-11" in (merged.bound_text or "")
            and "2026-01-25" in (merged.bound_text or "")
            and sorted(c.name for c in merged.children)
            == [f"{HWEEK_MERGED}_h{r}" for r in range(4)])


# the merge's contract runs on the sub-partitioned weeks: several sources, each with 4 leaves
def hash_weeks_only(conn: psycopg.Connection, dsn: str) -> None:
    with_hash_weeks(conn, dsn, extras=False)


# (without the DEFAULT and the reference, whose steps the rebound's contract kills already)
MOVE_SCENARIOS["merge"] = MoveScenario(
    hash_weeks_only, {"partitions": [hweek(HWEEKS[2]), hweek(HWEEKS[1])],
                      "name": HWEEK_MERGED}, _hash_merged)
