"""Moving rows between partitions online: the mechanism and the planning logic under the split,
merge, re-bound, drain-default, move-values and fill-gaps plan kinds.

Modules:

- changelog.py: change capture into a log (a trigger on every leaf of the source), the
  snapshot-consistent copy into target tables, replay in batches, exact online verification,
  and the last replay inside the swap. Its docstring states the protocol and proves it;
- planning.py: bounds math with no server (split, merge, re-bound, list values, gaps,
  drain-default's proposal shaped like the newest partitions);
- keys.py: the partition key as the server sees it: values typed and validated by a cast to the
  key's type, ordered as the server orders them, the DEFAULT's rows summarized in one aggregate
  query, and the predicates that route rows to targets (also the targets' and the DEFAULT's
  CHECKs).

Why not consolidation's way: consolidation locks the week (SHARE ROW EXCLUSIVE) for the whole
copy, so its writers wait for the copy; a mirror trigger then keeps the copy equal. A split may
hit the partition the application writes to right now (scenario 2). Here writers of the source
never wait longer than an instant of DDL under lock_timeout: the capture starts before the copy,
the copy reads a snapshot, and the log written meanwhile is replayed until the swap.

How a kind composes it (each numbered phase is a step of the plan engine, resumable: each
commits alone, and install/copy/replay detect what an earlier run committed):

1. Plan, reading the catalog only: keys.describe_key, keys.type_values for what the user typed
   (a value that does not parse as the key's type is refused with the server's message),
   planning.* for the new bounds, names checked (63 bytes, not taken).
2. Build the targets beside the live tables: the parent's columns, defaults and CHECKs, key
   columns NOT NULL, the same sub-partitioning, and a CHECK equal to the target's bound
   (keys.range_predicate / list_predicate) created with the empty table, hence validated for
   free. No lock on any live table.
3. Capture: changelog.install. SHARE ROW EXCLUSIVE on each leaf of the source for an instant
   (CREATE TRIGGER, ENABLE ALWAYS): it waits for writers in flight there and queues new ones
   behind it, so it runs under lock_timeout and is retried after a pause.
4. Copy: changelog.copy. REPEATABLE READ; ACCESS SHARE on the source (blocks nobody), ROW
   EXCLUSIVE on the targets nobody else uses, SHARE UPDATE EXCLUSIVE on the log (writers append
   under ROW EXCLUSIVE, which it does not conflict with). Its snapshot holds back vacuum's
   horizon for the copy's duration, like any long query.
5. Indexes (built after the copy, faster than row by row; ATTACH adopts them), the parent's
   foreign keys added NOT VALID then VALIDATEd on the targets (SHARE UPDATE EXCLUSIVE on the
   target, ROW SHARE on the referenced table: nobody waits), ANALYZE. On the targets only.
6. Catch up: changelog.catch_up, batches in REPEATABLE READ transactions until the backlog is
   small; then changelog.verify_online: count and checksum per new bound, exact, in one
   snapshot, writers carrying on. Nothing of the source is dropped unless this passed.
7. With a plain DEFAULT partition: a CHECK on the DEFAULT excluding the targets' bounds, NOT
   VALID (an instant of ACCESS EXCLUSIVE on the DEFAULT), then VALIDATE (SHARE UPDATE
   EXCLUSIVE: its writers carry on), so that the swap's ATTACH does not scan the DEFAULT under
   the parent's lock (reference §2.3 (f)/(g); §2.1: ATTACH, DETACH and CREATE ... PARTITION OF
   all take ACCESS EXCLUSIVE on the DEFAULT). Drain-default cannot do that (the DEFAULT holds
   those rows until the swap): there the DEFAULT is the source, and its replacement is one of
   the targets (an empty table whose CHECK excludes every range), so no DEFAULT is attached
   while the other targets are attached and nothing is scanned.
8. Swap, one short transaction under lock_timeout, retried as a whole: `LOCK TABLE ONLY parent
   IN ACCESS EXCLUSIVE MODE` first (the order writers lock in: parent, then partition; a writer
   waiting on a partition holds ROW EXCLUSIVE on the parent, and locking the partition first
   would deadlock with it), then `LOCK TABLE source IN SHARE ROW EXCLUSIVE MODE` (recurses to
   its leaves, which writers may name directly); changelog.replay_pending (the log's last
   entries; it checks the lock and that the log ends empty); the foreign keys that reference
   the parent dropped on the referencing tables (DETACH fails while referencing rows point
   into the source, §2.8, and plain DETACH takes ACCESS EXCLUSIVE on every referencing table
   anyway, §2.1); DETACH the source (ACCESS EXCLUSIVE on the parent, the source and the
   DEFAULT; DETACH CONCURRENTLY is impossible with a DEFAULT and inside a transaction, §2.4);
   renames (a target takes the source's name); ATTACH every target (no scan: its validated
   CHECK implies the bound and the key is NOT NULL, §2.3 (d)/(e)); the foreign keys re-created
   NOT VALID (enforced for every new write from the commit on; allowed on both 15 and 18 when
   referencing a partitioned table, §2.8); changelog.remove (the triggers, on the now detached
   source); drop the DEFAULT's helper CHECK. All of it or nothing, in milliseconds: no row is
   copied or scanned under the parent's lock, only the last entries replayed.
9. VALIDATE the re-created foreign keys, each in its own step (SHARE UPDATE EXCLUSIVE on the
   referencing table, ROW SHARE on the parent: writers carry on), reported like any step.
10. Drop the detached source later. No row is deleted from a live table at any point, so no
   ON DELETE CASCADE ever fires: the referencing rows are checked against the new partitions
   when the keys are validated (9.), and the source is dropped only when no key points at it.

Writers elsewhere in the table wait only for the swap (8.) and the instants of DDL (3., 7.),
each under lock_timeout. The source's rows stay visible through the parent at every moment:
in the source until the swap's commit, in the targets from it.

Limits of this package today: single-column keys (no expressions); a source with a unique,
immediate key on NOT NULL columns (changelog.describe_source says so otherwise); TRUNCATE of the
source is refused while it is captured; key equality and bounds use the operators visible from
pg_catalog (the built-in types'). The kinds, commands and screens are built on top of it.
"""
