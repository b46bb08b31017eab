"""Change capture, copy and replay (tui/core/moves/changelog.py) against real servers: a split of
a live partition while a writer inserts, updates (across the split point and out of the
partition) and deletes in it; a transaction straddling the copy's snapshot; a replay killed
mid-batch; capture under session_replication_role = replica; a hash sub-partitioned source;
hostile names throughout."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from tui.core.moves import changelog as cl
from tui.core.moves.changelog import MoveError, Target

SCHEMA = 'we"ird sch; ema'
PARENT = 'Pay "ment"'
SOURCE = "payment_2023; --"
LOG_SCHEMA = "pgparts move's log"
COLS = ["pay_ts", "pdm_id", "amount", "note"]
SPLIT = datetime(2023, 7, 1, tzinfo=UTC)
Y2023 = datetime(2023, 1, 1, tzinfo=UTC)
Y2024 = datetime(2024, 1, 1, tzinfo=UTC)


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, name)


def _setup(db, sub_hash: bool = False, rows: int = 2000) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(LOG_SCHEMA)))
        c.execute(sql.SQL(
            "CREATE TABLE {p} (pay_ts timestamptz NOT NULL, pdm_id int NOT NULL,"
            " amount numeric(10,2), note text, PRIMARY KEY (pay_ts, pdm_id))"
            " PARTITION BY RANGE (pay_ts)").format(p=ident(PARENT)))
        by = sql.SQL(" PARTITION BY HASH (pdm_id)") if sub_hash else sql.SQL("")
        c.execute(sql.SQL("CREATE TABLE {s} PARTITION OF {p} FOR VALUES FROM ({a}) TO ({b}){by}"
                          ).format(s=ident(SOURCE), p=ident(PARENT), a=sql.Literal(Y2023),
                                   b=sql.Literal(Y2024), by=by))
        if sub_hash:
            for r in range(4):
                c.execute(sql.SQL("CREATE TABLE {h} PARTITION OF {s}"
                                  " FOR VALUES WITH (modulus 4, remainder {r})").format(
                    h=ident(f"{SOURCE}_h{r}"), s=ident(SOURCE), r=sql.Literal(r)))
        c.execute(sql.SQL("CREATE TABLE {s} PARTITION OF {p} FOR VALUES FROM ({a}) TO ({b})"
                          ).format(s=ident("payment_2024"), p=ident(PARENT),
                                   a=sql.Literal(Y2024), b=sql.Literal(Y2024 + timedelta(366))))
        c.execute(sql.SQL("CREATE TABLE {s} PARTITION OF {p} DEFAULT").format(
            s=ident("payment_default"), p=ident(PARENT)))
        c.execute(sql.SQL(
            "INSERT INTO {p} SELECT {y} + (g * interval '157 minutes'), g % 97,"
            " g * 1.25, 'n' || g FROM generate_series(1, {n}) g").format(
            p=ident(PARENT), y=sql.Literal(Y2023), n=sql.Literal(rows)))
        for name, lo, hi in (("h1 \"new\"", Y2023, SPLIT), ("h2; new", SPLIT, Y2024)):
            c.execute(sql.SQL(
                "CREATE TABLE {t} (LIKE {p} INCLUDING DEFAULTS INCLUDING CONSTRAINTS,"
                " PRIMARY KEY (pay_ts, pdm_id), CHECK (pay_ts >= {lo} AND pay_ts < {hi}))"
            ).format(t=ident(name), p=ident(PARENT), lo=sql.Literal(lo), hi=sql.Literal(hi)))


def _targets() -> list[Target]:
    col = sql.Identifier("pay_ts")
    return [
        Target(ident('h1 "new"'), sql.SQL("{c} >= {a} AND {c} < {b}").format(
            c=col, a=sql.Literal(Y2023), b=sql.Literal(SPLIT)), "h1"),
        Target(ident("h2; new"), sql.SQL("{c} >= {a} AND {c} < {b}").format(
            c=col, a=sql.Literal(SPLIT), b=sql.Literal(Y2024)), "h2"),
    ]


def _assert_equal_per_bound(conn: psycopg.Connection, cap: cl.Capture) -> int:
    total = 0
    for t in _targets():
        src = cl.checksum(conn, ident(SOURCE), COLS, t.predicate)
        dst = cl.checksum(conn, t.table, COLS)
        assert src == dst, t.label
        total += src[0]
    assert total == cl.checksum(conn, ident(SOURCE), COLS)[0]
    return total


class Writer(threading.Thread):
    """Inserts, updates (across the split point, out of the partition and into it) and deletes
    rows of the source through the parent, until stopped; lock timeouts are retried."""

    def __init__(self, dsn: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.dsn, self.rng = dsn, random.Random(seed)
        self.stop = threading.Event()
        self.ops = 0
        self.error: BaseException | None = None
        self.stalls: list[tuple[float, float]] = []  # (start, seconds) of every write

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as c:
                c.execute("SET lock_timeout = '5s'")
                p = ident(PARENT)
                while not self.stop.is_set():
                    k = self.rng.randrange(1, 3000)
                    op = self.rng.randrange(6)
                    ts = Y2023 + timedelta(minutes=157 * k)
                    started = time.monotonic()
                    try:
                        with c.transaction():
                            if op == 0:
                                c.execute(sql.SQL(
                                    "INSERT INTO {p} VALUES ({t}, {d}, 1, 'new')"
                                    " ON CONFLICT DO NOTHING").format(
                                    p=p, t=sql.Literal(ts + timedelta(seconds=7)),
                                    d=sql.Literal(k % 50)))
                            elif op == 1:  # across the split point, both ways
                                c.execute(sql.SQL(
                                    "UPDATE {p} SET pay_ts = CASE WHEN pay_ts < {s}"
                                    " THEN pay_ts + interval '181 days'"
                                    " ELSE pay_ts - interval '181 days' END, note = 'moved'"
                                    " WHERE pdm_id = {d} AND pay_ts >= {a} AND pay_ts < {b}"
                                    " AND pay_ts::date = {t}::date").format(
                                    p=p, s=sql.Literal(SPLIT), d=sql.Literal(k % 97),
                                    a=sql.Literal(Y2023), b=sql.Literal(Y2024),
                                    t=sql.Literal(ts)))
                            elif op == 2:
                                c.execute(sql.SQL("UPDATE {p} SET amount = amount + 1"
                                                  " WHERE pay_ts >= {a} AND pay_ts < {b}"
                                                  " AND pdm_id = {d}").format(
                                    p=p, a=sql.Literal(ts), b=sql.Literal(ts + timedelta(5)),
                                    d=sql.Literal(k % 97)))
                            elif op == 3:
                                c.execute(sql.SQL("DELETE FROM {p} WHERE pay_ts >= {a}"
                                                  " AND pay_ts < {b} AND pdm_id = {d}").format(
                                    p=p, a=sql.Literal(ts), b=sql.Literal(ts + timedelta(3)),
                                    d=sql.Literal(k % 97)))
                            elif op == 4:  # out of the source into payment_2024, and back
                                c.execute(sql.SQL(
                                    "UPDATE {p} SET pay_ts = pay_ts + interval '1 year'"
                                    " WHERE pay_ts >= {a} AND pay_ts < {b} AND pdm_id = {d}"
                                    " AND pay_ts < {y}").format(
                                    p=p, a=sql.Literal(ts), b=sql.Literal(ts + timedelta(2)),
                                    d=sql.Literal(k % 97), y=sql.Literal(Y2024)))
                            else:
                                c.execute(sql.SQL(
                                    "UPDATE {p} SET pay_ts = pay_ts - interval '1 year'"
                                    " WHERE pay_ts >= {a} AND pay_ts < {b}").format(
                                    p=p, a=sql.Literal(ts + timedelta(365)),
                                    b=sql.Literal(ts + timedelta(366))))
                        self.ops += 1
                    except (psycopg.errors.LockNotAvailable, psycopg.errors.UniqueViolation,
                            psycopg.errors.DeadlockDetected):
                        pass
                    self.stalls.append((started, time.monotonic() - started))
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def test_split_under_concurrent_writes(db) -> None:
    _setup(db)
    writer = Writer(db.dsn, 7)
    writer.start()
    time.sleep(0.3)
    with db.connect() as conn:
        cap = cl.describe_source(conn, SCHEMA, SOURCE, LOG_SCHEMA)
        assert cap.key == ("pay_ts", "pdm_id")
        online_from = time.monotonic()
        cl.install(conn, cap)
        assert cl.capture_problems(conn, cap) == []
        time.sleep(0.3)
        result = cl.copy(conn, cap, _targets())
        assert result is not None and sum(result.rows) > 1000
        assert cl.copy(conn, cap, _targets()) is None  # a re-run finds the copy committed
        replayed = 0
        for _ in range(4):
            time.sleep(0.2)
            replayed += cl.catch_up(conn, cap, _targets(), limit=50, small=50)
        # exact, in one snapshot, while the writer goes on
        checked = cl.verify_online(conn, cap, _targets(), limit=30)
        assert sum(n for n, _ in checked) > 1000
        ops_before_swap = writer.ops
        swap_at = time.monotonic()
        # the swap: lock the source against writers (the writer waits), replay the rest
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
                ident(SOURCE)))
            replayed += cl.replay_pending(conn, cap, _targets(), limit=20)
            assert cl.backlog(conn, cap) == 0
            rows = _assert_equal_per_bound(conn, cap)
        writer.stop.set()
        writer.join(10)
        assert writer.error is None, writer.error
        assert ops_before_swap > 50 and replayed > 50, (ops_before_swap, replayed)
        # from the capture's install to the swap (copy and replays included), no write waited
        # anywhere near the lock timeout (measured: tens of milliseconds at worst)
        longest = max(d for s, d in writer.stalls if online_from <= s < swap_at)
        assert longest < 1.0, longest
        assert rows > 1000
        # cross-partition updates were captured both ways (rows moved out and back in)
        cl.remove(conn, cap)
        assert not cl.installed(conn, cap)
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_trigger"
                            " WHERE tgname LIKE 'pgparts%%'").fetchone()[0] == 0


def test_transaction_straddling_the_copy_snapshot(db) -> None:
    """Committed before the copy: in the copy, its entries dropped. In flight at the copy's
    snapshot: not in the copy, its entries replayed."""
    _setup(db, rows=300)
    with db.connect() as conn, psycopg.connect(db.dsn, autocommit=True) as w:
        cap = cl.describe_source(conn, SCHEMA, SOURCE, LOG_SCHEMA)
        cl.install(conn, cap)
        w.execute(sql.SQL("UPDATE {p} SET note = 'before copy' WHERE pdm_id = 5").format(
            p=ident(PARENT)))
        before = cl.backlog(conn, cap)
        assert before > 0
        w.execute("BEGIN")
        w.execute(sql.SQL("UPDATE {p} SET pay_ts = pay_ts + interval '200 days'"
                          " WHERE pdm_id = 7 AND pay_ts < {s}").format(
            p=ident(PARENT), s=sql.Literal(SPLIT)))
        w.execute(sql.SQL("DELETE FROM {p} WHERE pdm_id = 8").format(p=ident(PARENT)))
        w.execute(sql.SQL("INSERT INTO {p} VALUES ({t}, 1000, 2, 'straddler')").format(
            p=ident(PARENT), t=sql.Literal(SPLIT)))
        result = cl.copy(conn, cap, _targets())
        assert result is not None and result.skipped_entries == before
        w.execute("COMMIT")
        assert cl.backlog(conn, cap) > 0
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(ident(SOURCE)))
            cl.replay_pending(conn, cap, _targets())
            _assert_equal_per_bound(conn, cap)
        assert conn.execute(sql.SQL("SELECT note FROM {} WHERE pdm_id = 1000").format(
            ident("h2; new"))).fetchone()[0] == "straddler"


def test_killed_replay_reruns_to_the_same_result(db) -> None:
    _setup(db, rows=500)
    with db.connect() as conn, psycopg.connect(db.dsn, autocommit=True) as other:
        cap = cl.describe_source(conn, SCHEMA, SOURCE, LOG_SCHEMA)
        cl.install(conn, cap)
        cl.copy(conn, cap, _targets())
        other.execute(sql.SQL("UPDATE {p} SET pay_ts = pay_ts + interval '150 days',"
                              " note = 'x' WHERE pdm_id < 40 AND pay_ts < {y}").format(
            p=ident(PARENT), y=sql.Literal(Y2023 + timedelta(200))))
        other.execute(sql.SQL("DELETE FROM {p} WHERE pdm_id BETWEEN 40 AND 50").format(
            p=ident(PARENT)))
        pending = cl.backlog(conn, cap)
        assert pending > 20
        # the replay blocks on the second target after writing the first; then it is killed
        other.execute("BEGIN")
        other.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            ident("h2; new")))
        victim = db.connect()
        pid = victim.info.backend_pid
        errors: list[BaseException] = []

        def replay() -> None:
            try:
                cl.replay_batch(victim, cap, _targets(), limit=10_000)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=replay)
        t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute("SELECT wait_event_type FROM pg_catalog.pg_stat_activity"
                               " WHERE pid = %s", (pid,)).fetchone()
            if row and row[0] == "Lock":
                break
            time.sleep(0.02)
        else:
            pytest.fail("the replay never waited on the target's lock")
        conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (pid,))
        t.join(10)
        other.execute("ROLLBACK")
        assert errors and isinstance(errors[0], psycopg.OperationalError)
        assert cl.backlog(conn, cap) == pending  # nothing of the killed batch stayed
        assert cl.replay_batch(conn, cap, _targets()) == pending
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(ident(SOURCE)))
            assert cl.replay_pending(conn, cap, _targets()) == 0
            _assert_equal_per_bound(conn, cap)


def test_capture_fires_under_replica_role_and_refuses_truncate(db) -> None:
    _setup(db, rows=100)
    with db.connect() as conn, psycopg.connect(db.dsn, autocommit=True) as w:
        cap = cl.describe_source(conn, SCHEMA, SOURCE, LOG_SCHEMA)
        cl.install(conn, cap)
        cl.copy(conn, cap, _targets())
        w.execute("SET session_replication_role = replica")
        w.execute(sql.SQL("INSERT INTO {p} VALUES ({t}, 4242, 9, 'replica')").format(
            p=ident(PARENT), t=sql.Literal(SPLIT + timedelta(days=3))))
        assert cl.backlog(conn, cap) == 1
        with pytest.raises(psycopg.errors.RaiseException, match="TRUNCATE"):
            w.execute(sql.SQL("TRUNCATE {}").format(ident(SOURCE)))
        with pytest.raises(MoveError, match="locked against writers"), conn.transaction():
            cl.replay_pending(conn, cap, _targets())
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(ident(SOURCE)))
            assert cl.replay_pending(conn, cap, _targets()) == 1
            _assert_equal_per_bound(conn, cap)


def test_writers_need_no_privilege_on_the_log(db) -> None:
    _setup(db, rows=50)
    role = f"app writer {db.name}"
    db.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    db.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
        sql.Identifier(SCHEMA), sql.Identifier(role)))
    db.execute(sql.SQL("GRANT INSERT, SELECT, UPDATE, DELETE ON {} TO {}").format(
        ident(PARENT), sql.Identifier(role)))
    try:
        with db.connect() as conn:
            cap = cl.describe_source(conn, SCHEMA, SOURCE, LOG_SCHEMA)
            cl.install(conn, cap)
            with psycopg.connect(db.dsn, autocommit=True) as w:
                w.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
                w.execute(sql.SQL("INSERT INTO {p} VALUES ({t}, 1, 1, 'app')").format(
                    p=ident(PARENT), t=sql.Literal(SPLIT)))
                # nor can the writer hang the definer function on a table of its own
                w.execute("CREATE TEMP TABLE mine (x int)")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    w.execute(sql.SQL("CREATE TRIGGER t AFTER INSERT ON mine FOR EACH ROW"
                                      " EXECUTE FUNCTION {}()").format(cap.function))
            assert cl.backlog(conn, cap) == 1
            cl.remove(conn, cap)
    finally:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_hash_subpartitioned_source(db) -> None:
    _setup(db, sub_hash=True, rows=800)
    writer = Writer(db.dsn, 11)
    writer.start()
    with db.connect() as conn:
        cap = cl.describe_source(conn, SCHEMA, SOURCE, LOG_SCHEMA)
        assert len(cap.leaves) == 4
        cl.install(conn, cap)
        time.sleep(0.2)
        cl.copy(conn, cap, _targets())
        time.sleep(0.3)
        cl.catch_up(conn, cap, _targets(), limit=100, small=100)
        with conn.transaction():
            # LOCK recurses to the hash leaves, which writers lock directly
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(ident(SOURCE)))
            cl.replay_pending(conn, cap, _targets())
            _assert_equal_per_bound(conn, cap)
        writer.stop.set()
        writer.join(10)
        assert writer.error is None and writer.ops > 10
        # a fifth leaf attached meanwhile would escape the capture: it is reported
        conn.execute(sql.SQL("DROP TABLE {}").format(ident(f"{SOURCE}_h3")))
        assert cl.capture_problems(conn, cap)


def test_refusals(db) -> None:
    _setup(db)
    db.execute(sql.SQL("CREATE TABLE {} (a int, b text)").format(ident("nokey")))
    db.execute(sql.SQL("CREATE TABLE {} (a int PRIMARY KEY, pgparts_seq int)").format(
        ident("clash")))
    with db.connect() as conn:
        with pytest.raises(MoveError, match="no primary key"):
            cl.describe_source(conn, SCHEMA, "nokey", LOG_SCHEMA)
        with pytest.raises(MoveError, match="pgparts_seq"):
            cl.describe_source(conn, SCHEMA, "clash", LOG_SCHEMA)
        cap = cl.describe_source(conn, SCHEMA, SOURCE, LOG_SCHEMA)
        cl.install(conn, cap)
        with pytest.raises(MoveError, match="cover the source exactly once"):
            cl.copy(conn, cap, _targets()[:1])
        assert not cl.copied(conn, cap)  # rolled back: the first target is empty again
        assert cl.checksum(conn, _targets()[0].table, COLS) == (0, 0)
        assert cl.copy(conn, cap, _targets()) is not None
        # a capture trigger without its log (another move's, or left behind) is refused
        other = cl.Capture(cap.source_oid, SCHEMA, SOURCE, cap.leaves, cap.columns,
                           cap.insertable, cap.key, SCHEMA)
        with pytest.raises(MoveError, match="already has a trigger named pgparts_capture"):
            cl.install(conn, other)
        # a row lost from a target (not through the source) is found by the online check
        db.execute(sql.SQL("DELETE FROM {} WHERE pdm_id = 3").format(_targets()[1].table))
        with pytest.raises(MoveError, match="h2 holds"):
            cl.verify_online(conn, cap, _targets())


def test_install_behind_a_long_writer_times_out_and_leaves_nothing(db) -> None:
    _setup(db, rows=50)
    with db.connect() as conn, psycopg.connect(db.dsn, autocommit=True) as w:
        cap = cl.describe_source(conn, SCHEMA, SOURCE, LOG_SCHEMA)
        w.execute("BEGIN")
        w.execute(sql.SQL("UPDATE {} SET note = 'long' WHERE pdm_id = 1").format(ident(PARENT)))
        conn.execute("SET lock_timeout = '200ms'")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            cl.install(conn, cap)
        assert time.monotonic() - started < 2
        assert not cl.installed(conn, cap)
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_trigger"
                            " WHERE tgname LIKE 'pgparts%%'").fetchone()[0] == 0
        w.execute("COMMIT")  # the writer was never disturbed
        cl.install(conn, cap)
        assert cl.capture_problems(conn, cap) == []


def test_composed_split_with_swap_default_check_and_foreign_key(db) -> None:
    """The composition the package docstring describes, end to end, while a writer goes on:
    capture, copy, catch up, verify online, the DEFAULT's helper CHECK, then one short swap
    (lock, last replay, FK dropped, DETACH, ATTACH without scans, FK re-created NOT VALID),
    then VALIDATE. No referencing row is lost; the writer never waits long."""
    from tui.core.moves import keys

    _setup(db)
    ref = ident("payment_bonus")
    db.execute(sql.SQL("INSERT INTO {p} SELECT {t} + g * interval '1 day', 1000, 0, 'ref'"
                       " FROM generate_series(0, 300) g").format(
        p=ident(PARENT), t=sql.Literal(Y2023)))
    db.execute(sql.SQL("CREATE TABLE {r} (pay_ts timestamptz, pdm_id int, CONSTRAINT fk"
                       " FOREIGN KEY (pay_ts, pdm_id) REFERENCES {p} ON DELETE CASCADE)").format(
        r=ref, p=ident(PARENT)))
    db.execute(sql.SQL("INSERT INTO {r} SELECT pay_ts, pdm_id FROM {p} WHERE pdm_id = 1000"
                       ).format(r=ref, p=ident(PARENT)))
    writer = Writer(db.dsn, 3)
    writer.start()
    with db.connect() as conn:
        parent_oid = int(conn.execute(sql.SQL("SELECT {}::pg_catalog.regclass::pg_catalog.oid")
                                      .format(sql.Literal(ident(PARENT).as_string(conn))))
                         .fetchone()[0])
        key = keys.describe_key(conn, parent_oid)
        lo, hi = keys.type_values(conn, key, [Y2023.isoformat(), Y2024.isoformat()])
        cap = cl.describe_source(conn, SCHEMA, SOURCE, LOG_SCHEMA)
        cl.install(conn, cap)
        cl.copy(conn, cap, _targets())
        time.sleep(0.2)
        cl.catch_up(conn, cap, _targets(), small=100)
        cl.verify_online(conn, cap, _targets())
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT helper CHECK ({}) NOT VALID").format(
            ident("payment_default"), keys.exclusion_predicate(key, lo, hi)))
        conn.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT helper").format(
            ident("payment_default")))
        time.sleep(0.2)
        swap_from = time.monotonic()
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(
                ident(PARENT)))
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
                ident(SOURCE)))
            cl.replay_pending(conn, cap, _targets())
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT fk").format(ref))
            conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                ident(PARENT), ident(SOURCE)))
            for target, (a, b) in zip(_targets(), ((Y2023, SPLIT), (SPLIT, Y2024)), strict=True):
                conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {}"
                                     " FOR VALUES FROM ({}) TO ({})").format(
                    ident(PARENT), target.table, sql.Literal(a), sql.Literal(b)))
            conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT fk FOREIGN KEY (pay_ts, pdm_id)"
                                 " REFERENCES {} ON DELETE CASCADE NOT VALID").format(
                ref, ident(PARENT)))
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT helper").format(
                ident("payment_default")))
            cl.remove(conn, cap)
            old = cl.checksum(conn, ident(SOURCE), COLS)
            new = [cl.checksum(conn, t.table, COLS) for t in _targets()]
            assert old == (sum(n for n, _ in new), sum(h for _, h in new))
        swap_to = time.monotonic()
        conn.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT fk").format(ref))
        time.sleep(0.2)
        writer.stop.set()
        writer.join(10)
        assert writer.error is None, writer.error
        assert swap_to - swap_from < 1.0
        waits = [d for s, d in writer.stalls if s < swap_to and s + d > swap_from]
        assert waits and max(waits) < 1.0
        assert writer.ops > 50 and any(s > swap_to for s, _ in writer.stalls)
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ref)).fetchone()[0] == 301
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_constraint WHERE conname = 'fk'"
                            " AND NOT convalidated").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_trigger"
                            " WHERE tgname LIKE 'pgparts%%'").fetchone()[0] == 0
