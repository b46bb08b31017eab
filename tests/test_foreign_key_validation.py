"""Foreign keys touching partitioned tables, as the catalog records them on 15 and 18, and what
`pgparts check` says about them (finding foreign_key_not_valid).

PostgreSQL keeps an entry per partition of a partitioned referenced table (conparentid set, same
referencing table). Before 18, VALIDATE CONSTRAINT marks only the key itself: those entries stay
convalidated = false although every row was checked, with the same enforcement. The check goes
by the key they descend from; the migration adds such keys valid before 18 (one scan), a move's
re-created keys (online, validated after the swap) keep the flag on 15.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config, FindingsConfig, PlansConfig
from tui.core.findings import check_forest
from tui.core.names import display_name
from tui.core.plans import PlanRunner
from tui.core.plans.registry import kind_named

from .migrate_stages import foreign_key_entries
from .plans.scenarios import MOVE_SCENARIOS, REF, TABLE, ident, leftovers, spec

S = 'fk "s; é'
FAST = PlansConfig(lock_timeout_seconds=0.3, lock_retries=2)


def t(name: str) -> str:
    return sql.Identifier(S, name).as_string()


def _findings(conn: psycopg.Connection) -> list[str]:
    forest = load_forest(conn)
    return [f.message for f in check_forest(forest, FindingsConfig())
            if f.code == "foreign_key_not_valid"]


@pytest.fixture
def referenced(db):
    """A partitioned table p (two partitions, one of them partitioned) referenced by r."""
    db.execute(sql.SQL(
        "CREATE SCHEMA {s};"
        " CREATE TABLE {p} (k int PRIMARY KEY) PARTITION BY RANGE (k);"
        " CREATE TABLE {p1} PARTITION OF {p} FOR VALUES FROM (0) TO (100);"
        " CREATE TABLE {p2} PARTITION OF {p} FOR VALUES FROM (100) TO (200)"
        "  PARTITION BY RANGE (k);"
        " CREATE TABLE {p2a} PARTITION OF {p2} FOR VALUES FROM (100) TO (200);"
        " INSERT INTO {p} SELECT generate_series(0, 199);"
        " CREATE TABLE {r} (id int PRIMARY KEY, k int);"
        " INSERT INTO {r} SELECT g, g * 2 FROM generate_series(1, 90) g").format(
        s=sql.Identifier(S), p=sql.Identifier(S, "p"), p1=sql.Identifier(S, "p1"),
        p2=sql.Identifier(S, "p2"), p2a=sql.Identifier(S, "p2a"), r=sql.Identifier(S, "r")))
    return db


def test_validated_key_to_a_partitioned_table_is_no_finding_and_is_enforced(referenced):
    db = referenced
    db.execute(f"ALTER TABLE {t('r')} ADD CONSTRAINT \"r to p\" FOREIGN KEY (k)"
               f" REFERENCES {t('p')} NOT VALID")
    with db.connect() as conn:
        assert len(_findings(conn)) == 1  # NOT VALID: rows never checked
    db.execute(f"ALTER TABLE {t('r')} VALIDATE CONSTRAINT \"r to p\"")
    with db.connect() as conn:
        entries = foreign_key_entries(conn, t("p"))
        top = [e for e in entries if e[1] == "r to p"]
        per_partition = [e for e in entries if e[1] != "r to p"]
        assert [e[3] for e in top] == [True] and len(per_partition) == 3
        # the flag PostgreSQL leaves on 15 (the rows were all checked: VALIDATE scanned them)
        assert all(e[3] == (db.server.version_num >= 180000) for e in per_partition), entries
        assert _findings(conn) == []
        # enforced alike: a row pointing nowhere, a referenced row deleted from a partition
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1000, 500)").format(
                sql.Identifier(S, "r")))
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute(sql.SQL("DELETE FROM {} WHERE k = 150").format(
                sql.Identifier(S, "p2a")))


def test_not_valid_keys_are_reported_once_each(referenced):
    db = referenced
    db.execute(f"ALTER TABLE {t('r')} ADD CONSTRAINT \"r to p\" FOREIGN KEY (k)"
               f" REFERENCES {t('p')} NOT VALID;"
               f" CREATE TABLE {t('d')} (id int PRIMARY KEY);"
               f" INSERT INTO {t('d')} SELECT generate_series(0, 199);"
               f" ALTER TABLE {t('p1')} ADD CONSTRAINT \"p1 to d\" FOREIGN KEY (k)"
               f" REFERENCES {t('d')} NOT VALID")
    if db.server.version_num >= 180000:  # 15 refuses NOT VALID on a partitioned table
        db.execute(f"ALTER TABLE {t('p2')} ADD CONSTRAINT \"p2 to d\" FOREIGN KEY (k)"
                   f" REFERENCES {t('d')} NOT VALID")
    with db.connect() as conn:
        found = sorted(_findings(conn))
    def shown(name: str) -> str:
        return display_name(S, name)

    want = [
        f'foreign key "p1 to d" of {shown("p1")} to {shown("d")} is NOT VALID: rows written'
        f" before it was added were never checked (new writes are); ALTER TABLE {shown('p1')}"
        f' VALIDATE CONSTRAINT "p1 to d" checks them (SHARE UPDATE EXCLUSIVE: reads and writes'
        " go on)",
        f'foreign key "r to p" of {shown("r")} to {shown("p")} is NOT VALID: rows written'
        f" before it was added were never checked (new writes are); ALTER TABLE {shown('r')}"
        f' VALIDATE CONSTRAINT "r to p" checks them (SHARE UPDATE EXCLUSIVE: reads and writes'
        " go on)"]
    if db.server.version_num >= 180000:
        # the key of the sub-partitioned p2, not also its copy on p2a
        want.insert(1, want[0].replace("p1", "p2"))
    assert found == want
    db.execute(f"ALTER TABLE {t('r')} VALIDATE CONSTRAINT \"r to p\";"
               f" ALTER TABLE {t('p1')} VALIDATE CONSTRAINT \"p1 to d\"")
    if db.server.version_num >= 180000:
        db.execute(f"ALTER TABLE {t('p2')} VALIDATE CONSTRAINT \"p2 to d\"")
    with db.connect() as conn:
        assert _findings(conn) == []


def test_split_leaves_the_keys_validated_as_postgresql_records_them(db):
    """A split re-creates the key referencing the table NOT VALID in its swap and validates it
    after (online: no scan under the swap's locks). On 15 the entries per referenced partition
    keep the flag; the key itself, and the check, say validated."""
    with db.connect() as conn:
        MOVE_SCENARIOS["split"].build(conn, db.dsn)
    kind = kind_named("split")
    with db.connect() as conn:
        forest = load_forest(conn)
        plan = kind.build(conn, forest, kind.status(conn, forest, spec()),
                          kind.request(MOVE_SCENARIOS["split"].values, spec()),
                          Config(plans=FAST))
    result = PlanRunner(db.target, plan, config=FAST, backoff_base=0.02).run()
    assert result.ok, result.error
    with db.connect() as conn:
        entries = foreign_key_entries(conn, ident(TABLE).as_string(conn))
        ref = ident(REF).as_string(conn)
        top = [e for e in entries if e[0] == ref and e[2] == ident(TABLE).as_string(conn)]
        per_partition = [e for e in entries if e not in top]
        assert [e[3] for e in top] == [True] and len(per_partition) > 3
        assert all(e[3] == (db.server.version_num >= 180000) for e in per_partition), entries
        assert _findings(conn) == [] and leftovers(conn) == []
