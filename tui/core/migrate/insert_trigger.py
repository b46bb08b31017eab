"""Stage 8 (optional), collisions at insert time: a BEFORE INSERT trigger on the new table that
moves a new row colliding on the key to a free second of its minute, the way the Collisions
stage renumbered the old ones, so an application whose clocks have minute precision keeps
working.

For a new row whose (key prefix, timestamp) is taken by another row with a different tie-break,
the second is its rank by tie-break among the distinct tie-breaks of that (prefix, minute)
(UTC minute for timestamptz, as stage 3), or the next free one after it (wrapping within the
minute): rows already stored are never renumbered, since other tables point at them. A row
equal on the tie-break too is a duplicate by error: it is left as it is and the primary key
refuses it. A minute whose 60 seconds are all taken refuses the row (unique_violation).

Concurrent inserts into the same (prefix, minute) are serialized by a transaction-level
advisory lock on a hash of the table, the prefix and the minute's epoch (TimeZone-independent):
the second waits for the first to commit or roll back, and its next query (a new snapshot under
READ COMMITTED) sees the row. Under REPEATABLE READ the second cannot see it and the primary key
refuses the row instead.

The function is SECURITY DEFINER (writers need no SELECT on the table to look for collisions)
with `search_path = pg_catalog, pg_temp`, EXECUTE revoked from PUBLIC, and refuses to run for
anything but the new table's own rows (its partitions, BEFORE INSERT FOR EACH ROW). It is
created with CREATE FUNCTION, never OR REPLACE: a function of that name made by someone else
beforehand would keep its owner, and the writers would run it as that owner; the step fails
instead (it creates the function and the trigger in one transaction, so a killed run leaves
neither).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..plans.engine.model import Lock, Statement, Step
from . import MigrateError
from .ddl import StageSpec, fit, new_disp, new_ident, rel_oid, require_new

TRIGGER = "pgparts_collisions"


def function_ident(spec: StageSpec) -> sql.Identifier:
    return sql.Identifier(spec.schema, fit(f"pgparts_collisions_{spec.oid}"))


def _body(conn: psycopg.Connection, spec: StageSpec, ts_type: str) -> str:
    if spec.tiebreak is None:
        raise MigrateError("the insert trigger needs a tie-break column")
    new = new_ident(spec)
    ts = sql.Identifier(spec.column)
    tb = sql.Identifier(spec.tiebreak)
    prefix = [c for c in spec.key if c != spec.column]
    same_prefix = sql.SQL("").join(
        sql.SQL(" AND x.{c} = NEW.{c}").format(c=sql.Identifier(c)) for c in prefix)
    minute = (sql.SQL("pg_catalog.date_trunc('minute', NEW.{}, 'UTC')") if ts_type == "timestamptz"
              else sql.SQL("pg_catalog.date_trunc('minute', NEW.{})")).format(ts)
    key_text = sql.SQL(", ").join([
        sql.Literal(new.as_string(conn)),
        *[sql.SQL("NEW.{}::pg_catalog.text").format(sql.Identifier(c)) for c in prefix],
        sql.SQL("pg_catalog.date_part('epoch', m)::pg_catalog.text")])
    any_null = sql.SQL("").join(
        sql.SQL(" OR NEW.{} IS NULL").format(sql.Identifier(c)) for c in prefix)
    return sql.SQL("""
DECLARE
  m pg_catalog.{tstype};
  rk pg_catalog.int4;
  cand pg_catalog.{tstype};
BEGIN
  IF TG_OP <> 'INSERT' OR TG_WHEN <> 'BEFORE' OR TG_LEVEL <> 'ROW'
     OR pg_catalog.pg_partition_root(TG_RELID) IS DISTINCT FROM {reg}::pg_catalog.regclass THEN
    RAISE EXCEPTION 'pgparts: % serves % only', TG_NAME, {reg};
  END IF;
  IF NEW.{ts} IS NULL{any_null} THEN
    RETURN NEW;
  END IF;
  m := {minute};
  PERFORM pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended(pg_catalog.concat_ws('|', {key_text}), 0));
  IF NOT EXISTS (SELECT FROM {new} x WHERE x.{ts} = NEW.{ts}{same_prefix}) THEN
    RETURN NEW;
  END IF;
  IF EXISTS (SELECT FROM {new} x WHERE x.{ts} = NEW.{ts}{same_prefix}
             AND x.{tb} IS NOT DISTINCT FROM NEW.{tb}) THEN
    RETURN NEW;  -- the same row again: a duplicate by error, for the primary key to refuse
  END IF;
  SELECT pg_catalog.count(DISTINCT x.{tb}) INTO rk FROM {new} x
   WHERE x.{ts} >= m AND x.{ts} < m + interval '1 minute'{same_prefix} AND x.{tb} < NEW.{tb};
  FOR i IN 0..59 LOOP
    cand := m + pg_catalog.make_interval(secs => (rk + i) % 60);
    IF NOT EXISTS (SELECT FROM {new} x WHERE x.{ts} = cand{same_prefix}) THEN
      NEW.{ts} := cand;
      RETURN NEW;
    END IF;
  END LOOP;
  RAISE EXCEPTION 'pgparts: every second of minute % is taken for this key', m
    USING ERRCODE = 'unique_violation';
END""").format(
        tstype=sql.SQL(ts_type), reg=sql.Literal(new.as_string(conn)), ts=ts, tb=tb,
        any_null=any_null, minute=minute, key_text=key_text, new=new,
        same_prefix=same_prefix).as_string(conn)


def trigger_steps(conn: psycopg.Connection, spec: StageSpec) -> list[Step]:
    """Stage 8: the function and the BEFORE INSERT trigger, in one transaction."""
    oid = require_new(conn, spec)
    row = conn.execute(
        "SELECT t.typname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t"
        " ON t.oid = a.atttypid WHERE a.attrelid = %s AND a.attname = %s",
        (oid, spec.column)).fetchone()
    if row is None or row[0] not in ("timestamptz", "timestamp"):
        raise MigrateError("collisions at insert time apply to a timestamp partition column")
    fn = function_ident(spec)
    disp = new_disp(spec)

    def done(c: psycopg.Connection) -> bool:
        r = c.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = %s"
                      " AND tgname = %s AND tgparentid = 0)",
                      (rel_oid(c, spec.schema, spec.name) or 0, TRIGGER)).fetchone()
        return bool(r and r[0])

    if done(conn):
        return []
    return [Step(
        title=f"Collisions at insert time on {disp}",
        explanation=(f"A BEFORE INSERT trigger moves a new row that collides on "
                     f"({', '.join(spec.key)}) to a free second of its minute, ranked by "
                     f"{spec.tiebreak!r} as the Collisions stage did; concurrent inserts into "
                     "one minute wait for each other."),
        statements=[
            Statement(sql.SQL(
                "CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql"
                " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {body}").format(
                fn=fn, body=sql.Literal(_body(conn, spec, row[0]))),
                note="runs as its owner, never under a writer's search_path"),
            Statement(sql.SQL("REVOKE ALL ON FUNCTION {}() FROM PUBLIC").format(fn)),
            Statement(sql.SQL("CREATE TRIGGER {} BEFORE INSERT ON {} FOR EACH ROW"
                              " EXECUTE FUNCTION {}()").format(
                sql.Identifier(TRIGGER), new_ident(spec), fn))],
        locks=[Lock("SHARE ROW EXCLUSIVE", f"{disp} and its partitions", "an instant")],
        retry="step", done=done, group="insert trigger")]
