"""Change capture and replay: move a live partition's rows into new tables without blocking its
writers, by copying a snapshot and replaying the changes made since, as pg_repack and pg-osc do.

Objects (all in a schema the caller chooses; the kinds use pgparts' own, writable by the
operator only), named after the source relation's oid:

- the log `pgparts_log_<oid>`: bookkeeping columns `pgparts_seq` (identity: the order entries
  were written in), `pgparts_xid` (xid8 of the writing transaction) and `pgparts_old` (true for
  a before-image), then every column of the source (`LIKE source`: names, types, NOT NULL, no
  defaults, generated columns as plain ones). An INSERT logs the new row, a DELETE the old row,
  an UPDATE both (the old one first), so a change of key is a delete of the old key;
- the function `pgparts_capture_<oid>` (SECURITY DEFINER, `SET search_path = pg_catalog,
  pg_temp`, EXECUTE revoked from PUBLIC): writers need no privilege on the log, and nobody
  else can hang it on a table of theirs to write into the log (it also refuses to run for any
  relation but the source's leaves);
- the trigger `pgparts_capture` on every leaf of the source: AFTER INSERT OR UPDATE OR DELETE,
  FOR EACH ROW, ENABLE ALWAYS (fires under session_replication_role = replica too), plus
  BEFORE TRUNCATE, which refuses: a TRUNCATE fires no row trigger, so it would be lost;
- the table `pgparts_copied_<oid>`: one row once the copy committed (its snapshot, its rows).

Protocol and why nothing is lost or applied twice:

1. install() commits the log and the triggers. CREATE TRIGGER takes SHARE ROW EXCLUSIVE on each
   leaf, which waits for every transaction holding ROW EXCLUSIVE there (a writer keeps it to its
   end) and makes later writers wait for the install's commit (under lock_timeout; a timeout
   rolls back and is retried). So every write to the source either committed before the
   install committed, or is made by a transaction that locked the leaf afterwards and therefore
   runs the trigger: its changes are in the log, in the same transaction (committed together,
   or rolled back together).
2. copy() runs in one REPEATABLE READ transaction started after that commit: LOCK the log (SHARE
   UPDATE EXCLUSIVE, so replays wait but writers do not; LOCK takes no snapshot), then its
   snapshot S (`pg_current_snapshot()`, recorded) is taken. It copies every row of the source
   visible in S into the target whose predicate accepts it (exactly one must), then deletes
   the log entries whose transaction is visible in S (`pg_visible_in_snapshot(pgparts_xid,
   S)`: in this transaction, exactly the entries it can see), records S, and commits. Writes
   not captured committed before install, hence before S: they are in the copy. Captured
   writes visible in S are in the copy and their entries are gone, in the same commit; those
   not visible in S stay in the log. A kill rolls all of it back: empty targets, full log.
3. Per key, the log's order is the order of history: the source has a unique, immediate index
   on the key (required; the parent's primary key), so two transactions changing the same key
   are serialized by its row lock or by the index's wait on the other's insert or delete, and
   the later one's trigger (at the end of its statement) runs after the earlier one committed:
   a larger pgparts_seq. Hence the entries of one key visible in any snapshot are a prefix of
   that key's history (the later one committed only after the earlier did), and an entry not
   yet visible comes after every visible one of its key. (Without such an index this fails:
   two sessions could insert equal rows in either order; describe_source() refuses.)
4. replay_batch() runs in one REPEATABLE READ transaction (after the same LOCK): take the first
   `limit` visible entries by pgparts_seq (hi = the last one's), and for every key among them
   delete that key from every target, then insert the key's last entry with pgparts_seq <= hi
   when it is a new image (routed by the targets' predicates; exactly one must accept it),
   then delete the entries applied. One snapshot for all three, so an entry that commits
   meanwhile is neither applied nor deleted. Per key this applies a prefix of what is left of
   its history (3.), so each target holds, per key, a state the source really had. Delete then
   insert makes applying an entry again harmless, and the transaction makes a killed batch
   leave nothing: re-running it applies the same entries to the same tables.
5. replay_pending() is the last replay, in the swap's transaction, once the caller holds a lock
   on the source that excludes writers (SHARE or stronger; the parent's ACCESS EXCLUSIVE or
   DETACH gives it): no write to the source is in flight or can start, so every entry is
   committed and visible, and replaying them all leaves each target equal to the source's rows
   of its bound. It checks that the lock is held and that the log ends empty.

Measured (2 cores, the tests' servers, two targets, 3.3k-row source): the last replay of 200
entries took 3 ms, of 2,000 entries 7 ms, of 6,700 entries 19-22 ms (PG 18 / 15); the trigger
made 3,000 single-row inserts in one transaction take 99 ms instead of 81 (PG 18), 179 instead
of 97 (PG 15). catch_up's `small` bounds what the swap replays under the parent's lock.

Limits: one key column set with a unique immediate index whose columns are NOT NULL, no
expressions, no predicate; source columns named `pgparts_seq`, `pgparts_xid` or `pgparts_old`
are refused. Key equality and the predicates use the operators visible from pg_catalog (the
built-in types'). The set of leaves must not change during the move (capture_problems() says
when it did, or when a trigger was disabled or dropped). Targets are consistent only after the
last replay: before it, a row whose key changed may be absent from one target while still
present in the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..names import display_name

TRIGGER = "pgparts_capture"
BOOKKEEPING = ("pgparts_seq", "pgparts_xid", "pgparts_old")
# lock modes that exclude ROW EXCLUSIVE (writers), as pg_locks names them
WRITER_EXCLUDING = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")


class MoveError(Exception):
    """A move cannot start or go on; the message is one line, fit for a user."""


@dataclass(frozen=True)
class Target:
    """A table receiving the source's rows for which `predicate` is true.

    The predicate is an expression over the source's column names, unqualified (keys.py
    builds them from bounds); the targets' predicates must not overlap and must together
    accept every row of the source."""

    table: sql.Identifier
    predicate: sql.Composable
    label: str = ""


@dataclass(frozen=True)
class Capture:
    """What capture, copy and replay need to know about one source relation."""

    source_oid: int
    schema: str  # of the source
    name: str
    leaves: tuple[int, ...]  # oids of the source's leaf tables (the source itself when plain)
    columns: tuple[str, ...]  # every column, in order
    insertable: tuple[str, ...]  # without generated columns
    key: tuple[str, ...]
    log_schema: str

    @property
    def source(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def log(self) -> sql.Identifier:
        return sql.Identifier(self.log_schema, f"pgparts_log_{self.source_oid}")

    @property
    def sequence(self) -> sql.Identifier:
        """The log's identity sequence, named so its grants can be set (see moves.py)."""
        return sql.Identifier(self.log_schema, f"pgparts_log_{self.source_oid}_seq")

    @property
    def function(self) -> sql.Identifier:
        return sql.Identifier(self.log_schema, f"pgparts_capture_{self.source_oid}")

    @property
    def state(self) -> sql.Identifier:
        return sql.Identifier(self.log_schema, f"pgparts_copied_{self.source_oid}")


@dataclass(frozen=True)
class CopyResult:
    rows: tuple[int, ...]  # per target, in order
    snapshot: str
    skipped_entries: int  # log entries already in the copy, deleted by it


def _ids(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


# -- the source --------------------------------------------------------------------------------
def describe_source(conn: psycopg.Connection, schema: str, name: str, log_schema: str
                    ) -> Capture:
    """Read the source's leaves, columns and key from the catalog (no row is read)."""
    row = conn.execute(
        "SELECT c.oid, c.relkind FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
    if row is None:
        raise MoveError(f"no table {display_name(schema, name)}")
    oid, relkind = int(row[0]), row[1]
    disp = display_name(schema, name)
    if relkind not in ("r", "p"):
        raise MoveError(f"{disp} is not a table (relkind {relkind})")
    leaves = [(int(r[0]), r[1]) for r in conn.execute(
        "SELECT t.relid::pg_catalog.oid, c.relkind FROM pg_catalog.pg_partition_tree(%s) t"
        " JOIN pg_catalog.pg_class c ON c.oid = t.relid WHERE t.isleaf ORDER BY t.relid",
        (oid,)).fetchall()] if relkind == "p" else [(oid, "r")]
    foreign = [o for o, k in leaves if k != "r"]
    if foreign:
        raise MoveError(f"{disp} has partitions that are not plain tables "
                        f"(oid {foreign[0]}): their changes cannot be captured")
    cols = conn.execute(
        "SELECT attname, attgenerated <> '' FROM pg_catalog.pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,)).fetchall()
    clash = [c for c, _ in cols if c in BOOKKEEPING]
    if clash:
        raise MoveError(f"{disp} has a column named {clash[0]}, which the change log "
                        f"uses for itself")
    key = _key_columns(conn, oid)
    if not key:
        raise MoveError(
            f"{disp} has no primary key (nor a unique, immediate index on NOT NULL "
            f"columns without expressions or predicate): replaying changes in order needs one")
    return Capture(oid, schema, name, tuple(o for o, _ in leaves), tuple(c for c, _ in cols),
                   tuple(c for c, g in cols if not g), tuple(key), log_schema)


def _key_columns(conn: psycopg.Connection, oid: int) -> list[str]:
    rows = conn.execute(
        "SELECT x.indisprimary, ARRAY(SELECT a.attname FROM pg_catalog.unnest(x.indkey::int2[])"
        "  WITH ORDINALITY k(n, o) JOIN pg_catalog.pg_attribute a"
        "  ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o),"
        " (SELECT pg_catalog.bool_and(a.attnotnull) FROM pg_catalog.pg_attribute a"
        "  WHERE a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey::int2[]))"
        " FROM pg_catalog.pg_index x WHERE x.indrelid = %s AND x.indisunique"
        " AND x.indimmediate AND x.indisvalid AND x.indpred IS NULL AND x.indexprs IS NULL"
        " AND x.indnkeyatts = x.indnatts AND NOT (0 = ANY(x.indkey::int2[]))"
        " ORDER BY x.indisprimary DESC, x.indnatts, x.indexrelid", (oid,)).fetchall()
    for _primary, names, notnull in rows:
        if notnull:
            return list(names)
    return []


# -- capture -----------------------------------------------------------------------------------
def _leaf_idents(conn: psycopg.Connection, oids: Sequence[int]) -> list[tuple[int, sql.Identifier]]:
    rows = conn.execute(
        "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(%s)"
        " ORDER BY c.oid", (list(oids),)).fetchall()
    return [(int(o), sql.Identifier(s, n)) for o, s, n in rows]


def _function_body(cap: Capture) -> sql.Composed:
    cols = _ids(cap.columns)

    def image(rec: str, old: bool) -> sql.Composed:
        return sql.SQL("INSERT INTO {log} (pgparts_old, {cols}) VALUES ({old}, {vals});").format(
            log=cap.log, cols=cols, old=sql.Literal(old),
            vals=sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.SQL(rec), sql.Identifier(c))
                                    for c in cap.columns))

    leaves = sql.Literal("{" + ",".join(str(o) for o in cap.leaves) + "}")
    return sql.SQL(
        "BEGIN\n"
        "  IF NOT (TG_RELID = ANY ({leaves}::pg_catalog.oid[])) THEN\n"
        "    RAISE EXCEPTION 'pgparts change capture: not a table of this move';\n"
        "  END IF;\n"
        "  IF TG_OP = 'TRUNCATE' THEN\n"
        "    RAISE EXCEPTION 'pgparts is moving the rows of %: TRUNCATE would bypass the move',"
        " TG_TABLE_NAME;\n"
        "  END IF;\n"
        "  IF TG_OP <> 'INSERT' THEN {old} END IF;\n"
        "  IF TG_OP <> 'DELETE' THEN {new} END IF;\n"
        "  RETURN NULL;\n"
        "END").format(leaves=leaves, old=image("OLD", True), new=image("NEW", False))


def install_sql(conn: psycopg.Connection, cap: Capture) -> list[sql.Composed]:
    """The statements of install(), for a preview or a script. One transaction."""
    body = _function_body(cap).as_string(conn)
    stmts = [
        sql.SQL(
            "CREATE TABLE {log} (pgparts_seq pg_catalog.int8 GENERATED ALWAYS AS IDENTITY"
            " (SEQUENCE NAME {seq}) PRIMARY KEY, pgparts_xid pg_catalog.xid8 NOT NULL"
            " DEFAULT pg_catalog.pg_current_xact_id(), pgparts_old pg_catalog.bool NOT NULL,"
            " LIKE {source})").format(log=cap.log, seq=cap.sequence, source=cap.source),
        sql.SQL("CREATE TABLE {state} (copied_at pg_catalog.timestamptz NOT NULL"
                " DEFAULT pg_catalog.now(), snapshot pg_catalog.text NOT NULL,"
                " rows pg_catalog.int8 NOT NULL)").format(state=cap.state),
        sql.SQL("CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
                " SET search_path = pg_catalog, pg_temp AS {body}").format(
            fn=cap.function, body=sql.Literal(body)),
        sql.SQL("REVOKE ALL ON FUNCTION {fn}() FROM PUBLIC").format(fn=cap.function),
    ]
    for _oid, leaf in _leaf_idents(conn, cap.leaves):
        stmts += [
            sql.SQL("CREATE TRIGGER {trg} AFTER INSERT OR UPDATE OR DELETE ON {leaf}"
                    " FOR EACH ROW EXECUTE FUNCTION {fn}()").format(
                trg=sql.Identifier(TRIGGER), leaf=leaf, fn=cap.function),
            sql.SQL("CREATE TRIGGER {trg} BEFORE TRUNCATE ON {leaf}"
                    " FOR EACH STATEMENT EXECUTE FUNCTION {fn}()").format(
                trg=sql.Identifier(TRIGGER + "_truncate"), leaf=leaf, fn=cap.function),
            sql.SQL("ALTER TABLE {leaf} ENABLE ALWAYS TRIGGER {trg}").format(
                leaf=leaf, trg=sql.Identifier(TRIGGER)),
            sql.SQL("ALTER TABLE {leaf} ENABLE ALWAYS TRIGGER {trg}").format(
                leaf=leaf, trg=sql.Identifier(TRIGGER + "_truncate")),
        ]
    return stmts


def installed(conn: psycopg.Connection, cap: Capture) -> bool:
    row = conn.execute(sql.SQL("SELECT pg_catalog.to_regclass({q}) IS NOT NULL").format(
        q=sql.Literal(cap.log.as_string(conn)))).fetchone()
    return bool(row and row[0])


def install(conn: psycopg.Connection, cap: Capture) -> None:
    """Create the log and the capture triggers, in one transaction (SHARE ROW EXCLUSIVE on each
    leaf for an instant, once the writers in flight there have finished). Does nothing when
    already installed (a re-run after a kill)."""
    with conn.transaction():
        if installed(conn, cap):
            return
        clash = conn.execute(
            "SELECT c.relname, t.tgname FROM pg_catalog.pg_trigger t"
            " JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
            " WHERE t.tgrelid = ANY(%s) AND t.tgname IN (%s, %s) LIMIT 1",
            (list(cap.leaves), TRIGGER, TRIGGER + "_truncate")).fetchone()
        if clash:
            raise MoveError(f"{display_name(None, clash[0])} already has a trigger named "
                            f"{clash[1]} (another move's capture?); remove it first")
        for stmt in install_sql(conn, cap):
            conn.execute(stmt)


def capture_problems(conn: psycopg.Connection, cap: Capture) -> list[str]:
    """Why the log may miss changes, or []: a leaf without its enabled-ALWAYS trigger, a leaf
    attached to or detached from the source since install."""
    problems: list[str] = []
    if cap.leaves != (cap.source_oid,):
        now = {int(r[0]) for r in conn.execute(
            "SELECT relid::pg_catalog.oid FROM pg_catalog.pg_partition_tree(%s) WHERE isleaf",
            (cap.source_oid,)).fetchall()}
        if now != set(cap.leaves):
            problems.append("the partitions of the source changed since the capture started")
    rows = conn.execute(
        "SELECT c.oid, c.relname, t.tgname, t.tgenabled FROM pg_catalog.pg_class c"
        " LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid AND t.tgname IN (%s, %s)"
        " WHERE c.oid = ANY(%s)",
        (TRIGGER, TRIGGER + "_truncate", list(cap.leaves))).fetchall()
    seen: dict[int, set[str]] = {o: set() for o in cap.leaves}
    for oid, relname, tgname, enabled in rows:
        if tgname is None:
            continue
        if enabled != "A":
            problems.append(f"trigger {tgname} on {relname} is not enabled ALWAYS")
        seen[int(oid)].add(tgname)
    for oid, names in seen.items():
        if len(names) < 2:
            problems.append(f"a partition of the source (oid {oid}) lacks the capture trigger")
    return problems


def remove_sql(conn: psycopg.Connection, cap: Capture) -> list[sql.Composed]:
    """Drop the triggers (ACCESS EXCLUSIVE on each leaf: in the swap, or once detached), the
    function, the log and the copy's record. Idempotent."""
    stmts = [
        sql.SQL("DROP TRIGGER IF EXISTS {trg} ON {leaf}").format(trg=sql.Identifier(t), leaf=leaf)
        for _oid, leaf in _leaf_idents(conn, cap.leaves) for t in (TRIGGER, TRIGGER + "_truncate")
    ]
    stmts += [sql.SQL("DROP FUNCTION IF EXISTS {}()").format(cap.function),
              sql.SQL("DROP TABLE IF EXISTS {}").format(cap.log),
              sql.SQL("DROP TABLE IF EXISTS {}").format(cap.state)]
    return stmts


def remove(conn: psycopg.Connection, cap: Capture) -> None:
    with conn.transaction():
        for stmt in remove_sql(conn, cap):
            conn.execute(stmt)


# -- copy --------------------------------------------------------------------------------------
def copied(conn: psycopg.Connection, cap: Capture) -> bool:
    row = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(cap.state)).fetchone()
    return bool(row and row[0])


def _lock_log(conn: psycopg.Connection, cap: Capture) -> None:
    # SHARE UPDATE EXCLUSIVE conflicts with itself, not with ROW EXCLUSIVE: copy and replays
    # are serialized, writers appending to the log are not blocked
    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(cap.log))


def copy(conn: psycopg.Connection, cap: Capture, targets: Sequence[Target]) -> CopyResult | None:
    """Copy the source's rows into the targets in one REPEATABLE READ transaction taken after
    install() committed, and drop the log entries that copy already holds (module docstring,
    2.). Returns None when an earlier run's copy committed already."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise MoveError("copy() needs its own transaction: the connection is in one")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        _lock_log(conn, cap)
        # the first statement that takes a snapshot: the copy's snapshot from here on
        snapshot = str(conn.execute("SELECT pg_catalog.pg_current_snapshot()::pg_catalog.text")
                       .fetchone()[0])
        if copied(conn, cap):
            return None
        problems = capture_problems(conn, cap)
        if problems:
            raise MoveError(f"change capture is broken: {problems[0]}")
        for t in targets:
            if conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(t.table)
                            ).fetchone()[0]:
                raise MoveError(f"target {t.label or t.table.as_string(conn)} is not empty")
        total = int(conn.execute(sql.SQL("SELECT pg_catalog.count(*) FROM {}").format(
            cap.source)).fetchone()[0])
        rows = []
        for t in targets:
            cur = conn.execute(sql.SQL(
                "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {src}"
                " WHERE ({pred}) IS TRUE").format(
                t=t.table, cols=_ids(cap.insertable), src=cap.source, pred=t.predicate))
            rows.append(int(cur.rowcount))
        if sum(rows) != total:
            raise MoveError(f"the targets' bounds take {sum(rows):,} of the source's {total:,} "
                            f"rows: they must cover the source exactly once")
        cur = conn.execute(sql.SQL(
            "DELETE FROM {log} WHERE pg_catalog.pg_visible_in_snapshot(pgparts_xid,"
            " {snap}::pg_catalog.pg_snapshot)").format(log=cap.log, snap=sql.Literal(snapshot)))
        skipped = int(cur.rowcount)
        conn.execute(sql.SQL("INSERT INTO {state} (snapshot, rows) VALUES ({s}, {n})").format(
            state=cap.state, s=sql.Literal(snapshot), n=sql.Literal(total)))
    return CopyResult(tuple(rows), snapshot, skipped)


# -- replay ------------------------------------------------------------------------------------
def backlog(conn: psycopg.Connection, cap: Capture) -> int:
    """Committed log entries not replayed yet."""
    return int(conn.execute(sql.SQL("SELECT pg_catalog.count(*) FROM {}").format(cap.log)
                            ).fetchone()[0])


def _key_match(key: Sequence[str], left: str, right: str) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("{}.{} = {}.{}").format(sql.Identifier(left), sql.Identifier(k),
                                        sql.Identifier(right), sql.Identifier(k)) for k in key)


def _apply(conn: psycopg.Connection, cap: Capture, targets: Sequence[Target], limit: int) -> int:
    """Apply the first `limit` entries the current snapshot sees and delete them; returns how
    many. The caller provides one snapshot for all of it (REPEATABLE READ, or a lock on the
    source that stops new entries)."""
    row = conn.execute(sql.SQL(
        "SELECT pg_catalog.max(s), pg_catalog.count(*) FROM (SELECT pgparts_seq AS s"
        " FROM {log} ORDER BY pgparts_seq LIMIT {n}) b").format(
        log=cap.log, n=sql.Literal(limit))).fetchone()
    hi, n = row[0], int(row[1])
    if not n:
        return 0
    key = _ids(cap.key)
    batch = sql.SQL("SELECT * FROM {log} WHERE pgparts_seq <= {hi}").format(
        log=cap.log, hi=sql.Literal(hi))
    for t in targets:
        conn.execute(sql.SQL(
            "DELETE FROM {t} AS t USING (SELECT DISTINCT {key} FROM ({batch}) b0) AS b"
            " WHERE {match}").format(t=t.table, key=key, batch=batch,
                                     match=_key_match(cap.key, "t", "b")))
    last = sql.SQL("SELECT DISTINCT ON ({key}) * FROM ({batch}) b0"
                   " ORDER BY {key}, pgparts_seq DESC").format(key=key, batch=batch)
    wanted = int(conn.execute(sql.SQL(
        "SELECT pg_catalog.count(*) FROM ({last}) l WHERE NOT l.pgparts_old").format(last=last)
        ).fetchone()[0])
    inserted = 0
    for t in targets:
        cur = conn.execute(sql.SQL(
            "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM ({last}) l"
            " WHERE NOT l.pgparts_old AND ({pred}) IS TRUE").format(
            t=t.table, cols=_ids(cap.insertable), last=last, pred=t.predicate))
        inserted += int(cur.rowcount)
    if inserted != wanted:
        raise MoveError(f"{wanted - inserted:,} changed rows fall outside every target's bound "
                        f"(or in several)")
    conn.execute(sql.SQL("DELETE FROM {log} WHERE pgparts_seq <= {hi}").format(
        log=cap.log, hi=sql.Literal(hi)))
    return n


def replay_batch(conn: psycopg.Connection, cap: Capture, targets: Sequence[Target],
                 limit: int = 10_000) -> int:
    """Replay up to `limit` committed entries in one REPEATABLE READ transaction of their own
    (module docstring, 4.); returns how many. Writers are not blocked."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise MoveError("replay_batch() needs its own transaction: the connection is in one")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        _lock_log(conn, cap)
        if not copied(conn, cap):
            raise MoveError("replay before the copy committed")
        return _apply(conn, cap, targets, limit)


def catch_up(conn: psycopg.Connection, cap: Capture, targets: Sequence[Target],
             limit: int = 10_000, small: int = 1_000, max_batches: int = 1_000) -> int:
    """Replay batches until one finds fewer than `small` entries (the backlog the swap will
    replay under its lock); returns the number of entries replayed. Gives up (MoveError) after
    `max_batches` when writers outpace the replay."""
    total = 0
    for _ in range(max_batches):
        n = replay_batch(conn, cap, targets, limit)
        total += n
        if n < small:
            return total
    raise MoveError(f"the change log still grows after {max_batches} batches: writers outpace "
                    f"the replay")


def holds_writer_lock(conn: psycopg.Connection, oid: int) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'relation'"
        " AND pid = pg_catalog.pg_backend_pid() AND granted AND relation = %s"
        " AND database = (SELECT oid FROM pg_catalog.pg_database"
        "                 WHERE datname = pg_catalog.current_database())"
        " AND mode = ANY(%s))", (oid, list(WRITER_EXCLUDING))).fetchone()
    return bool(row and row[0])


def replay_pending(conn: psycopg.Connection, cap: Capture, targets: Sequence[Target],
                   limit: int = 10_000) -> int:
    """The last replay, inside the caller's (swap) transaction, which must hold a lock on every
    leaf of the source that excludes writers (module docstring, 5.). Returns the entries
    replayed; the log is empty afterwards. Nothing is committed here."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        raise MoveError("replay_pending() runs inside the swap's transaction")
    unlocked = [o for o in cap.leaves if not holds_writer_lock(conn, o)]
    if unlocked:
        raise MoveError(f"the last replay needs the source locked against writers "
                        f"(oid {unlocked[0]} is not)")
    problems = capture_problems(conn, cap)
    if problems:
        raise MoveError(f"change capture is broken: {problems[0]}")
    if not copied(conn, cap):
        raise MoveError("replay before the copy committed")
    _lock_log(conn, cap)
    total = 0
    while True:
        n = _apply(conn, cap, targets, limit)
        total += n
        if n == 0:
            break
    if backlog(conn, cap):
        raise MoveError("the change log is not empty after the last replay")
    return total


# -- verification ------------------------------------------------------------------------------
def row_hash(cols: Sequence[str]) -> sql.Composed:
    """A 64-bit hash of a row's text (any column type)."""
    return sql.SQL("pg_catalog.hashtextextended(ROW({})::pg_catalog.text, 0)").format(_ids(cols))


def checksum(conn: psycopg.Connection, relation: sql.Composable, cols: Sequence[str],
             predicate: sql.Composable | None = None) -> tuple[int, int]:
    """Row count and order-independent checksum (sum of row hashes) of a relation, optionally
    of its rows matching a predicate."""
    where = sql.SQL("") if predicate is None else sql.SQL(" WHERE ({}) IS TRUE").format(predicate)
    row: Any = conn.execute(sql.SQL(
        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum({h}), 0) FROM {rel}{where}").format(
        h=row_hash(cols), rel=relation, where=where)).fetchone()
    return int(row[0]), int(row[1])


def verify_online(conn: psycopg.Connection, cap: Capture, targets: Sequence[Target],
                  limit: int = 10_000) -> list[tuple[int, int]]:
    """An exact comparison while writers carry on: in one REPEATABLE READ snapshot, replay every
    entry that snapshot sees (then the targets, as this transaction sees them, hold the rows
    the source holds in the snapshot: module docstring, 2. to 4.), and compare row count and
    checksum per target with the source's rows of its bound. Commits the replay; raises
    MoveError on a difference. Returns (count, checksum) per target."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise MoveError("verify_online() needs its own transaction: the connection is in one")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        _lock_log(conn, cap)
        if not copied(conn, cap):
            raise MoveError("verification before the copy committed")
        while _apply(conn, cap, targets, limit):
            pass
        out = []
        for t in targets:
            src = checksum(conn, cap.source, cap.columns, t.predicate)
            dst = checksum(conn, t.table, cap.columns)
            if src != dst:
                raise MoveError(
                    f"{t.label or t.table.as_string(conn)} holds {dst[0]:,} rows (checksum "
                    f"{dst[1]}), the source {src[0]:,} of its bound (checksum {src[1]})")
            out.append(dst)
        total = checksum(conn, cap.source, cap.columns)[0]
        if sum(n for n, _ in out) != total:
            raise MoveError(f"the targets hold {sum(n for n, _ in out):,} of the source's "
                            f"{total:,} rows")
    return out
