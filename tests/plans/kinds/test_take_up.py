"""fill-gaps and create-ahead take up a table an interrupted run of theirs left standalone only
when pgparts' registry records it (test_new_partition_leftovers.py): never one found by its name
and owner, such as a partition the operator detached to keep aside; attaching it would bring
its rows back into the table."""

from __future__ import annotations

from .test_remedies import cli

SETUP = """
CREATE SCHEMA app;
CREATE TABLE app.ev (k int NOT NULL, v text) PARTITION BY RANGE (k);
CREATE TABLE app.ev_0 PARTITION OF app.ev FOR VALUES FROM (0) TO (100);
CREATE TABLE app.ev_100 PARTITION OF app.ev FOR VALUES FROM (100) TO (200);
CREATE TABLE app.ev_200 PARTITION OF app.ev FOR VALUES FROM (200) TO (300);
CREATE TABLE app.ev_def PARTITION OF app.ev DEFAULT;
INSERT INTO app.ev SELECT i, 'v' FROM generate_series(0, 299) i;
-- the operator keeps 100-199 aside: detached, with its rows
ALTER TABLE app.ev DETACH PARTITION app.ev_100;
"""


def test_fill_gaps_does_not_attach_a_detached_table_holding_rows(db, capsys):
    db.execute(SETUP)
    status, out, err = cli(capsys, "fill-gaps", "app.ev", "--dry-run", "-d", db.dsn)
    assert status == 0, err
    assert "app.ev_100_2" in out, out  # the kept table's name is taken
    status, out, err = cli(capsys, "fill-gaps", "app.ev", "--apply", "--yes", "-d", db.dsn)
    assert status == 0, out + err
    # the kept table stays out of the partitioned table, with its rows
    assert db.query("SELECT count(*) FROM app.ev") == [(200,)], out + err
    assert db.query("SELECT relispartition FROM pg_class WHERE oid = 'app.ev_100'::regclass"
                    ) == [(False,)]
    assert db.query("SELECT count(*) FROM app.ev_100") == [(100,)]
    # the hole is filled by a new partition: a row of it lands there, not in the DEFAULT
    db.execute("INSERT INTO app.ev VALUES (150, 'late')")
    assert db.query("SELECT count(*) FROM app.ev_100_2") == [(1,)]
    assert db.query("SELECT count(*) FROM app.ev_def") == [(0,)]
