"""A migration's preview never runs the table's code: planning any read of the table folds
the constant parts of its indexes' predicates and expressions, so an IMMUTABLE function there
ran with the operator's rights during `--dry-run` (measured). Such a table is refused by the
previews in one line, before any row is read; `--apply` still runs (it runs the table's code,
as every apply does)."""

from __future__ import annotations

import pytest

from tui.core.migrate import MigrateError
from tui.core.migrate.migration import Choices, prepare
from tui.core.migrate.report import proposals

from .migrate_support import PLAIN, build_legacy
from .test_migrate_cli import ARGS, run_cli

# raises only in pgparts' sessions (application_name), so the index can be built here
_PLANT = """
CREATE FUNCTION public.planted(x numeric) RETURNS numeric LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF pg_catalog.current_setting('application_name') LIKE 'pgparts%' THEN
    RAISE EXCEPTION 'the table''s code ran in a preview';
  END IF;
  RETURN x;
END $$;
CREATE INDEX planted_ix ON legacy.payment (amount) WHERE amount > public.planted(0);
"""


def test_a_dry_run_refuses_a_table_whose_reads_run_its_code(db, capsys):
    with db.connect() as conn:
        build_legacy(conn, PLAIN, rows=100)
        conn.commit()
    db.execute(_PLANT)
    for flag in ("--dry-run", "--sql"):
        status, out, err = run_cli(capsys, "migrate", *ARGS, flag, "-d", db.dsn)
        assert status == 2 and len(err.strip().splitlines()) == 1, err
        assert "public.planted(numeric) (index planted_ix)" in err, err
        assert "ran in a preview" not in err + out
    # the console's form and its key proposals: refused, or not probed
    with db.connect() as conn:
        with pytest.raises(MigrateError, match="planted"):
            prepare(conn, Choices("legacy", "payment", "pay_ts", ("pdm_id", "pay_ts"),
                                  "tracer", interval="year"))
        assert all(k.unique is None for k in proposals(conn, "legacy", "payment").keys)
    # without the index the same preview runs
    db.execute("DROP INDEX legacy.planted_ix")
    status, _out, err = run_cli(capsys, "migrate", *ARGS, "--dry-run", "-d", db.dsn)
    assert status == 0, err
