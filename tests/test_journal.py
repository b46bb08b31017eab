"""The journal tells the truth about every run: written at the start and per step, so a run
killed by SIGKILL reads as interrupted with the steps it committed; only committed rows count;
steps found done are reported as already done; an unwritable journal stops the plan before it
starts."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tui.cli import main
from tui.commands.apply import report as apply_report
from tui.core.plans import Outcome, PlanError, PlanRunner, RunState, StepStatus
from tui.core.plans.engine import journal
from tui.core.plans.registry import kind_named

from .test_plan_support import (
    FAST_PLANS,
    OLD_WEEKS,
    build_balances,
    consolidation_plan,
    user_tables,
)

REPO = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- reading: records folded into one entry per run -----------------------------------------
def test_records_fold_into_runs_and_a_dead_run_reads_interrupted(tmp_path):
    path = tmp_path / "journal.jsonl"
    legacy = {"plan": "consolidate", "target": "t", "outcome": "ok", "rows_copied": 7,
              "started": "2026-01-01T00:00:00+00:00"}
    path.write_text(json.dumps(legacy) + "\n")
    steps = [{"index": i, "title": f"step {i}", "status": "pending", "rows": 0}
             for i in (1, 2, 3)]
    dead = journal.RunRecord(path)
    dead.start({"plan": "consolidate", "target": "t", "outcome": "running", "steps": steps})
    dead.step({"index": 1, "status": "running"})
    dead.step({"index": 1, "status": "done", "rows": 40})
    dead.step({"index": 2, "status": "running", "rows": 0})
    dead.step({"index": 2, "status": "running", "rows": 12})  # copied, never committed
    with path.open("a") as fh:  # a line cut by the crash
        fh.write('{"run": "' + dead.run_id + '", "record": "step", "st')
    lines = path.read_text().splitlines()
    # the process that wrote it is gone: fake its pid as one that no longer exists
    start = json.loads(lines[1])
    start["pid"] = _dead_pid()
    lines[1] = json.dumps(start)
    path.write_text("\n".join(lines) + "\n")
    live = journal.RunRecord(path)  # this process: still running
    live.start({"plan": "consolidate", "target": "u", "outcome": "running", "steps": steps})

    running, interrupted, old = journal.read(path)
    assert running["outcome"] == "running" and running["target"] == "u"
    assert old == legacy  # the one-line format reads unchanged
    assert interrupted["outcome"] == "interrupted"
    assert interrupted["state"] == "interrupted at step 2 (state unknown: re-run to resume)"
    assert [s["status"] for s in interrupted["steps"]] == ["done", "interrupted", "pending"]
    assert interrupted["rows_copied"] == 40  # only what committed
    assert journal.read(path, target="t", limit=1) == [interrupted]

    live.end({"outcome": "ok", "finished": "x", "steps": [
        {**s, "status": "done", "rows": 5} for s in steps]})
    assert journal.read(path, limit=1)[0]["outcome"] == "ok"
    assert journal.read(path, limit=1)[0]["rows_copied"] == 15


# -- a real process killed mid-run ------------------------------------------------------------
def test_sigkill_after_a_swap_leaves_an_interrupted_entry_with_its_committed_steps(
        db18, tmp_path, capsys):
    with db18.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=30)
        leaf = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass ORDER BY 1 LIMIT 1",
            (f"public.{b.weeks[1]}",)).fetchone()[0]
    config = tmp_path / "config.toml"
    config.write_text('[plans]\nlock_timeout = "60s"\n')
    env = {**os.environ, "PGPARTS_CONFIG": str(config)}
    # a reader of a leaf of the second week: the first week is consolidated (swapped, its
    # original dropped), the second week's copy is built and verified, its swap (the DETACH
    # locks the week's leaves) waits: killed there
    with psycopg.connect(db18.dsn) as reader:
        reader.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", leaf)))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "consolidate", "account_balances", "--apply",
             "--yes", "-d", db18.dsn], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        waiting = 0
        with psycopg.connect(db18.dsn, autocommit=True) as watch:
            while time.monotonic() < deadline and proc.poll() is None and not waiting:
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                    " 'pgparts plan' AND wait_event_type = 'Lock'").fetchone()[0]
                time.sleep(0.1)
        if not waiting:
            proc.kill()
            pytest.fail(f"the plan never waited for the lock: {proc.communicate()}")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
        reader.rollback()
    assert proc.returncode == -signal.SIGKILL
    entry = journal.read(limit=1)[0]
    assert entry["target"] == "account_balances" and entry["outcome"] == "interrupted"
    statuses = [s["status"] for s in entry["steps"]]
    assert statuses == ["done"] * 9 + ["interrupted", "pending", "pending"], statuses
    assert entry["state"] == "interrupted at step 10 (state unknown: re-run to resume)"
    assert entry["rows_copied"] == 60 and entry["finished"] is None
    with db18.connect() as conn:  # the first swap and drop had committed
        tables = user_tables(conn, "public")
        assert f"{b.weeks[0]}_consolidated" in tables and b.weeks[0] not in tables
        assert b.weeks[1] in tables and f"{b.weeks[1]}_consolidated" in tables

    # the re-run resumes: what it did and what was already done are told apart
    status = main(["consolidate", "account_balances", "--apply", "--yes", "-d", db18.dsn])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f"[1/6] Build {b.weeks[1]}_consolidated: already done" in err
    assert f"[4/6] Swap {b.weeks[1]} for {b.weeks[1]}_consolidated: done\n" in err
    assert out.splitlines()[0].startswith("consolidated 1 partition of account_balances in ")
    assert "4 steps done by this run, 2 already done; 0 rows copied" in out
    rerun = journal.read(limit=1)[0]
    assert rerun["outcome"] == "ok" and rerun["rows_copied"] == 0
    assert journal.read(limit=2)[1]["outcome"] == "interrupted"


# -- a build that fails after copying: rolled back, so nothing was copied ---------------------
def test_failed_build_counts_no_rows_and_a_rerun_of_done_steps_says_so(db):
    with db.connect() as conn:
        build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=40)
    plan = consolidation_plan(db)
    seen = []

    def hook(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        if (event, step) == ("before_commit", 1):  # after the copy, before COMMIT
            seen.append(runner.outcomes[0].rows)
            raise PlanError("the build failed before its commit")

    result = PlanRunner(db.target, plan, config=FAST_PLANS, hook=hook).run()
    assert seen == [40]  # the copy had run
    assert result.outcome == Outcome.FAILED and result.steps[0].status == StepStatus.FAILED
    assert result.steps[0].rows == 0 and result.rows_copied == 0
    entry = journal.read(limit=1)[0]
    assert entry["outcome"] == "failed" and entry["rows_copied"] == 0
    assert entry["steps"][0]["status"] == "failed" and entry["steps"][0]["rows"] == 0
    assert "nothing" in entry["state"] or "no step" in entry["state"]

    done = PlanRunner(db.target, plan, config=FAST_PLANS).run()
    assert done.ok and done.rows_copied == 40 and journal.read(limit=1)[0]["rows_copied"] == 40
    # the same plan again: every step was done by the run before
    progress = []
    again = PlanRunner(db.target, plan, config=FAST_PLANS, progress=progress.append).run()
    assert again.ok and not again.done_steps and len(again.already_done_steps) == 6
    assert any(p.state == RunState.SKIPPED and p.message == "already done" for p in progress)
    out = io.StringIO()
    with redirect_stdout(out):
        kind = kind_named("consolidate")
        assert apply_report(again, plan, noun=kind.noun, report_lines=kind.report) == 0
    assert out.getvalue() == ("nothing to do: every step was already done (6 steps of "
                              "account_balances)\n")
    assert json.loads(json.dumps(journal.read(limit=1)[0]))["outcome"] == "ok"
    assert [s["status"] for s in journal.read(limit=1)[0]["steps"]] == ["skipped"] * 6


# -- a journal that cannot be written ----------------------------------------------------------
def test_unwritable_journal_refuses_before_starting(db18, tmp_path, capsys, monkeypatch):
    with db18.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=5)
    blocker = tmp_path / "file"
    blocker.write_text("")
    # a directory cannot be made under a file, whoever runs the test (root included)
    monkeypatch.setenv("PGPARTS_STATE_DIR", str(blocker / "state"))
    status = main(["consolidate", "account_balances", "--apply", "--yes", "-d", db18.dsn])
    _out, err = capsys.readouterr()
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgparts: cannot write the journal "), err
    assert "nothing was applied" in lines[0] and "PGPARTS_STATE_DIR" in lines[0]
    # the runner itself (the console's path) does not start either
    result = PlanRunner(db18.target, consolidation_plan(db18), config=FAST_PLANS).run()
    assert result.outcome == Outcome.FAILED and "cannot write the journal" in result.error
    assert "not started" in result.error and result.state == "nothing was changed"
    assert all(o.status == StepStatus.PENDING for o in result.steps)
    with db18.connect() as conn:
        assert b.weeks[0] in user_tables(conn, "public")
        assert f"{b.weeks[0]}_consolidated" not in user_tables(conn, "public")


def test_journal_view_shows_an_interrupted_run_and_already_done_steps(tmp_path):
    from tui.app.journal_screen import entry_details

    path = tmp_path / "journal.jsonl"
    record = journal.RunRecord(path)
    steps = [{"index": i, "title": f"step {i}", "status": "pending", "rows": 0} for i in (1, 2)]
    record.start({"plan": "consolidate", "title": "consolidate 1 partition of t", "target": "t",
                  "outcome": "running", "steps": steps, "finished": None})
    record.step({"index": 1, "status": "skipped"})
    record.step({"index": 2, "status": "running"})
    lines = path.read_text().splitlines()
    start = json.loads(lines[0])
    start["pid"] = _dead_pid()
    path.write_text("\n".join([json.dumps(start), *lines[1:]]) + "\n")
    text = entry_details(journal.read(path)[0]).plain
    assert "outcome: interrupted · rows copied 0" in text and "not finished" in text
    assert "interrupted at step 2 (state unknown: re-run to resume)" in text
    assert " 1. already done" in text and " 2. interrupted" in text


def test_sigterm_cancels_like_ctrl_c_and_is_journaled(db18, tmp_path):
    with db18.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=5)
    config = tmp_path / "config.toml"
    config.write_text('[plans]\nlock_timeout = "60s"\n')
    env = {**os.environ, "PGPARTS_CONFIG": str(config)}
    with psycopg.connect(db18.dsn) as writer:  # an open write on the week: the build waits
        writer.execute("INSERT INTO account_balances VALUES ('2024-01-08', 'x', 1, 'a', '{}')")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "consolidate", "account_balances", "--apply",
             "--yes", "-d", db18.dsn], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        waiting = 0
        with psycopg.connect(db18.dsn, autocommit=True) as watch:
            while time.monotonic() < deadline and proc.poll() is None and not waiting:
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                    " 'pgparts plan' AND wait_event_type = 'Lock'").fetchone()[0]
                time.sleep(0.1)
        if not waiting:
            proc.kill()
            pytest.fail(f"the plan never waited for the lock: {proc.communicate()}")
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        writer.rollback()
    assert proc.returncode == 143, err
    assert "consolidation cancelled" in err and "Traceback" not in err
    entry = journal.read(limit=1)[0]
    assert entry["outcome"] == "cancelled" and entry["finished"]
    assert entry["steps"][0]["status"] == "cancelled" and entry["rows_copied"] == 0
    with db18.connect() as conn:
        assert f"{b.weeks[0]}_consolidated" not in user_tables(conn, "public")
