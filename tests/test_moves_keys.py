"""The key as the server sees it (tui/core/moves/keys.py): typing and validating values, the
DEFAULT's occupancy for drain-default, and routing predicates used by a copy."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tui.core.bounds import parse_bound
from tui.core.moves import changelog as cl
from tui.core.moves import keys
from tui.core.moves.planning import (
    Existing,
    PlanningError,
    infer_interval,
    move_list_values,
    propose_partitions,
    split_range,
)

S = 'Sch "ö"; x'


def t(name: str) -> sql.Identifier:
    return sql.Identifier(S, name)


def _oid(conn: psycopg.Connection, name: str) -> int:
    return int(conn.execute("SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace"
                            " n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                            (S, name)).fetchone()[0])


def test_values_are_typed_and_validated_by_the_server(db) -> None:
    db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(S)))
    db.execute(sql.SQL("CREATE TABLE {} (ts timestamp(0) with time zone NOT NULL, v int)"
                       " PARTITION BY RANGE (ts)").format(t("pay")))
    db.execute(sql.SQL('CREATE TABLE {} (c text COLLATE "C") PARTITION BY LIST (c)').format(
        t("codes")))
    with db.connect() as conn:
        key = keys.describe_key(conn, _oid(conn, "pay"))
        assert (key.column, key.category, key.strategy) == ("ts", "time", "r")
        vals = keys.type_values(conn, key, ["2023-01-01", "2023-07-01 00:00:00.6",
                                            "2024-01-01 02:00+02"])
        # typmod 0 rounds like the partition bound would; offsets are normalized to UTC
        assert [v.text for v in vals] == ["2023-01-01 00:00:00+00", "2023-07-01 00:00:01+00",
                                          "2024-01-01 00:00:00+00"]
        lo, at, hi = (v.value for v in vals)
        assert split_range((lo, hi), [at])[1] == (at, hi)
        with pytest.raises(PlanningError, match="'2023-13-45' is not a valid timestamp"):
            keys.type_values(conn, key, ["2023-13-45"])
        ckey = keys.describe_key(conn, _oid(conn, "codes"))
        assert ckey.category == "other" and ckey.strategy == "l"
        typed = keys.type_values(conn, ckey, ["b", "B", None, "a"])
        # ranks in the key's collation ("C": upper case first); NULL stays NULL
        assert [v.value for v in typed] == [3, 1, None, 2]
        assert move_list_values([v.value for v in typed], [None, 2])[0] == [3, 1]


def test_drain_default_proposal_covers_every_row(db) -> None:
    db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(S)))
    db.execute(sql.SQL("CREATE TABLE {} (pay_ts timestamptz NOT NULL, pdm_id int NOT NULL,"
                       " PRIMARY KEY (pay_ts, pdm_id)) PARTITION BY RANGE (pay_ts)").format(
        t("payment")))
    for name, lo, hi in (("payment_2000_2019", "2000-01-01", "2020-01-01"),
                         ("payment_2022", "2022-01-01", "2023-01-01"),
                         ("payment_2023", "2023-01-01", "2024-01-01")):
        db.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
            t(name), t("payment"), sql.Literal(lo), sql.Literal(hi)))
    db.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
        t("payment_default"), t("payment")))
    # rows before the first partition, in the gap (2020, 2021) and after the last
    db.execute(sql.SQL(
        "INSERT INTO {} SELECT y + g * interval '1 day', g FROM generate_series(0, 40) g,"
        " unnest(ARRAY['1998-03-01', '2020-05-01', '2021-12-20', '2025-11-30']::timestamptz[]) y"
    ).format(t("payment")))
    with db.connect() as conn:
        key = keys.describe_key(conn, _oid(conn, "payment"))
        bounds = conn.execute(
            "SELECT c.relname, pg_catalog.pg_get_expr(c.relpartbound, c.oid)"
            " FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s ORDER BY 1",
            (_oid(conn, "payment"),)).fetchall()
        existing = []
        for name, text in bounds:
            b = parse_bound(text)
            if b.kind != "range":
                continue
            lo, hi = keys.type_values(conn, key, [b.lower[0].text, b.upper[0].text])
            existing.append(Existing(name, lo.value, hi.value))
        newest = max(existing, key=lambda e: e.lower)
        occupied = keys.default_occupancy(conn, key, t("payment_default"),
                                          infer_interval(newest.lower, newest.upper))
        props = propose_partitions(existing, occupied, "payment")
        assert [(p.name, p.lower.year, p.upper.year) for p in props] == [
            ("payment_1998", 1998, 1999), ("payment_2020", 2020, 2021),
            ("payment_2021", 2021, 2022), ("payment_2025", 2025, 2026),
            ("payment_2026", 2026, 2027)]
        total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            t("payment_default"))).fetchone()[0]
        covered = sum(cl.checksum(conn, t("payment_default"), ["pay_ts", "pdm_id"],
                                  keys.range_predicate(key, p.lower, p.upper))[0] for p in props)
        assert covered == total == 135  # 29 of the rows from 2021-12-20 are in 2022
        # the proposals are valid bounds: PostgreSQL accepts them next to the others
        for p in props:
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(t(p.name), t("payment")))
            conn.execute(sql.SQL("ALTER TABLE {} ADD CHECK ({})").format(
                t(p.name), keys.range_predicate(key, p.lower, p.upper)))


def test_list_move_with_null_through_the_change_log(db) -> None:
    """Move NULL and 'b' out of a list partition: predicates route the copy and the replay."""
    db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(S)))
    db.execute(sql.SQL("CREATE TABLE {} (id int NOT NULL, c text, PRIMARY KEY (id))"
                       " PARTITION BY RANGE (id)").format(t("outer")))
    db.execute(sql.SQL("CREATE TABLE {} (id int NOT NULL, c text, PRIMARY KEY (id))").format(
        t("src")))
    db.execute(sql.SQL("INSERT INTO {} SELECT g, (ARRAY['a', 'b', NULL])[g % 3 + 1]"
                       " FROM generate_series(1, 300) g").format(t("src")))
    for name in ("keep", "moved"):
        db.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(t(name), t("src")))
    with db.connect() as conn:
        db.execute(sql.SQL("CREATE TABLE {} (c text) PARTITION BY LIST (c)").format(t("lp")))
        key = keys.describe_key(conn, _oid(conn, "lp"))
        a, b, null = keys.type_values(conn, key, ["a", "b", None])
        left, moved = move_list_values([a.value, b.value, None], [None, b.value])
        assert left == [a.value]
        by_value = {a.value: a, b.value: b, None: null}
        targets = [cl.Target(t("keep"), keys.list_predicate(key, [by_value[v] for v in left])),
                   cl.Target(t("moved"), keys.list_predicate(key, [by_value[v] for v in moved]))]
        cap = cl.describe_source(conn, S, "src", S)
        cl.install(conn, cap)
        conn.execute(sql.SQL("UPDATE {} SET c = NULL WHERE id <= 10").format(t("src")))
        cl.copy(conn, cap, targets)
        conn.execute(sql.SQL("UPDATE {} SET c = 'a' WHERE id BETWEEN 11 AND 20").format(
            t("src")))
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(t("src")))
            cl.replay_pending(conn, cap, targets)
            for target in targets:
                assert cl.checksum(conn, t("src"), ["id", "c"], target.predicate) == \
                    cl.checksum(conn, target.table, ["id", "c"])
        assert conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE c IS NULL").format(
            t("moved"))).fetchone()[0] > 90


@pytest.mark.parametrize("type_sql", ["timestamp(0) with time zone", "bigint"])
def test_checks_from_predicates_spare_attach_its_scans(db, type_sql: str) -> None:
    """A target whose CHECK is range_predicate, and a DEFAULT whose CHECK is
    exclusion_predicate: ATTACH scans neither (the DEBUG1 messages of reference §2.3)."""
    db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(S)))
    db.execute(sql.SQL("CREATE TABLE {} (k {} NOT NULL, v text) PARTITION BY RANGE (k)").format(
        t("p"), sql.SQL(type_sql)))
    db.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(t("p_def"), t("p")))
    with db.connect() as conn:
        key = keys.describe_key(conn, _oid(conn, "p"))
        texts = ["2023-07-01", "2024-01-01"] if key.category == "time" else ["100", "200"]
        lo, hi = keys.type_values(conn, key, texts)
        conn.execute(sql.SQL("INSERT INTO {} VALUES ({}::{}, 'stays')").format(
            t("p"), sql.Literal(hi.text), key.type))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(t("new"), t("p")))
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT c CHECK ({})").format(
            t("new"), keys.range_predicate(key, lo, hi)))
        conn.execute(sql.SQL("INSERT INTO {} VALUES ({}::{}, 'moved')").format(
            t("new"), sql.Literal(lo.text), key.type))
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT x CHECK ({}) NOT VALID").format(
            t("p_def"), keys.exclusion_predicate(key, lo, hi)))
        conn.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT x").format(t("p_def")))
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("SET client_min_messages = debug1")
        conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})"
                             ).format(t("p"), t("new"), sql.Literal(lo.text),
                                      sql.Literal(hi.text)))
        conn.execute("SET client_min_messages = notice")
        assert not [n for n in notices if n.startswith("verifying table")], notices
        assert any("new" in n and "implied by existing constraints" in n for n in notices)
        assert any("p_def" in n and "implied by existing constraints" in n for n in notices)
