"""`pgparts consolidate` end to end: status, dry run, SQL, apply with and without a terminal,
read-only refusal, Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tui.cli import main
from tui.core.plans.engine import journal

from .test_plan_support import OLD_WEEKS, build_balances, user_tables, week_checksums

REPO = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(result: tuple[int, str, str], fragment: str) -> None:
    status, _out, err = result
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgparts: ") and fragment in lines[0], err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_text_and_json(db18, capsys):
    with db18.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=50)
    status, out, _ = run_cli(capsys, "consolidate", "account_balances", "status", "-d", db18.dsn)
    assert status == 0
    lines = out.splitlines()
    assert lines[1].split()[:6] == ["partition", "status", "parts", "rows", "size", "bound"]
    assert lines[2].split()[:4] == [b.weeks[0], "HASH_PARTITIONED", "4", "50"]
    status, out, _ = run_cli(capsys, "consolidate", "account_balances", "status", "--json",
                             "-d", db18.dsn)
    data = json.loads(out)
    assert data["parent"] == "account_balances"
    assert [p["partition"] for p in data["partitions"]] == [*b.weeks, b.current]
    first = data["partitions"][0]
    assert (first["status"], first["subpartitions"], first["rows"]) == ("HASH_PARTITIONED", 4, 50)
    assert first["lower"].startswith("2024-01-07") and first["bytes"] >= 0


def test_status_after_options(db18, capsys):
    """Options may come between TABLE and `status`, as in `consolidate TABLE --demo status`."""
    with db18.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=10)
    status, out, err = run_cli(capsys, "consolidate", "account_balances", "-d", db18.dsn,
                               "status")
    assert status == 0, err
    assert out.splitlines()[2].split()[:2] == [b.weeks[0], "HASH_PARTITIONED"]


def test_dry_run_sql_and_json_change_nothing(db18, capsys):
    with db18.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=50)
    status, out, _ = run_cli(capsys, "consolidate", "account_balances", "--older-than",
                             "3months", "--batch", "1", "--dry-run", "-d", db18.dsn)
    assert status == 0
    assert f"{b.weeks[0]}: replace 4 partitions holding ~50 rows" in out
    assert b.weeks[1] not in out.split("SQL:")[0]  # batch of one, oldest first
    assert "estimated space saved" in out
    assert "lock: ACCESS EXCLUSIVE on account_balances" in out
    assert "ALTER TABLE account_balances DETACH PARTITION" not in out  # Identifier quotes
    assert f'ALTER TABLE "public"."account_balances" DETACH PARTITION "public"."{b.weeks[0]}";' \
        in out
    status, script, _ = run_cli(capsys, "consolidate", "account_balances", "--weeks",
                                b.weeks[1], "--sql", "-d", db18.dsn)
    assert status == 0 and script.startswith("-- pgparts plan: consolidate 1 partition ")
    assert f'"{b.weeks[1]}_consolidated"' in script and b.weeks[0] not in script
    lines = script.splitlines()
    begins = [ln for ln in lines if ln.startswith("BEGIN") and ln.endswith(";")]
    # build, verify, swap, drop, removal of the change counter
    assert len(begins) == lines.count("COMMIT;") == 5
    assert begins[1] == "BEGIN ISOLATION LEVEL REPEATABLE READ;"
    status, out, _ = run_cli(capsys, "consolidate", "account_balances", "--dry-run", "--json",
                             "--keep-detached", "-d", db18.dsn)
    plan = json.loads(out)
    assert [s["title"].split()[0] for s in plan["steps"]] == ["Build", "Analyze", "Verify",
                                                               "Swap"] * 2
    assert plan["details"]["keep_detached"] is True
    with db18.connect() as conn:  # nothing changed
        assert set(b.weeks) <= user_tables(conn, "public")
        assert not any(t.endswith("_consolidated") for t in user_tables(conn, "public"))


def test_apply_yes_and_terminal_answers(db18, capsys, monkeypatch):
    with db18.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=50)
        before = week_checksums(conn, b, OLD_WEEKS[:2])
    # no terminal, no --yes: refused, nothing done
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    one_line_error(run_cli(capsys, "consolidate", "account_balances", "--apply", "-d",
                           db18.dsn), "there is none")
    # a terminal answering no
    monkeypatch.setattr(sys, "stdin", _Terminal("no\n"))
    status, _out, err = run_cli(capsys, "consolidate", "account_balances", "--apply",
                                "--weeks", b.weeks[0], "-d", db18.dsn)
    assert status == 1 and "not applied" in err and "replace 4 partitions" in err
    with db18.connect() as conn:
        assert b.weeks[0] in user_tables(conn, "public")
    # the originals are dropped: 'yes' is not enough, the table's name is (as in the console)
    monkeypatch.setattr(sys, "stdin", _Terminal("yes\n"))
    status, out, err = run_cli(capsys, "consolidate", "account_balances", "--apply",
                               "--weeks", b.weeks[0], "-d", db18.dsn)
    assert status == 1 and "Type its name" in out, (out, err)
    monkeypatch.setattr(sys, "stdin", _Terminal("account_balances\n"))
    status, out, err = run_cli(capsys, "consolidate", "account_balances", "--apply",
                               "--weeks", b.weeks[0], "-d", db18.dsn)
    assert status == 0, err
    assert f"{b.weeks[0]} -> {b.weeks[0]}_consolidated" in out
    assert "size before" in out and "longest ACCESS EXCLUSIVE hold" in out
    assert "[1/6] Build" in err  # progress on stderr
    # --yes: the rest, oldest first
    status, out, err = run_cli(capsys, "consolidate", "account_balances", "--apply", "--yes",
                               "-d", db18.dsn)
    assert status == 0, err
    with db18.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS[:2]) == before
        assert not set(b.weeks) & user_tables(conn, "public")
    assert [e["outcome"] for e in journal.read(limit=2)] == ["ok", "ok"]
    status, out, err = run_cli(capsys, "consolidate", "account_balances", "--apply", "--yes",
                               "-d", db18.dsn)
    assert status == 0 and "nothing to consolidate" in err


def test_dry_run_with_nothing_to_consolidate_says_so(db18, capsys):
    db18.execute("""
        CREATE TABLE public.plainweeks (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
        CREATE TABLE public.plainweeks_1 PARTITION OF public.plainweeks
          FOR VALUES FROM ('2024-01-07') TO ('2024-01-14');
        CREATE TABLE public.plainweeks_2 PARTITION OF public.plainweeks
          FOR VALUES FROM ('2024-01-14') TO ('2024-01-21');
    """)
    status, out, err = run_cli(capsys, "consolidate", "plainweeks", "--dry-run", "-d", db18.dsn)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "Plan: consolidate 0 partitions of plainweeks"
    assert "nothing to consolidate: none of the 2 partitions of plainweeks" in out
    assert lines[-1] == "Steps: none, nothing would run." and "SQL:" not in out


def test_user_errors(db18, capsys):
    with db18.connect() as conn:
        build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=5)
    d = ("-d", db18.dsn)
    one_line_error(run_cli(capsys, "consolidate", "account_balances", "--apply", "--yes",
                           "--read-only", *d), "refused in --read-only mode")
    one_line_error(run_cli(capsys, "consolidate", "account_balances", *d), "say what to do")
    one_line_error(run_cli(capsys, "consolidate", "account_balances", "--older-than", "soon",
                           "--dry-run", *d), "--older-than")
    one_line_error(run_cli(capsys, "consolidate", "nope", "status", *d), "nope")
    one_line_error(run_cli(capsys, "consolidate", "account_balances", "--weeks", "nope",
                           "--sql", *d), "no partition named 'nope'")
    one_line_error(run_cli(capsys, "consolidate", "account_balances", "--dry-run", "--yes", *d),
                   "--yes goes with --apply")


def test_ctrl_c_cancels_on_the_server(db18, tmp_path):
    with db18.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=5)
    config = tmp_path / "config.toml"
    config.write_text('[plans]\nlock_timeout = "30s"\n')
    env = {**os.environ, "PGPARTS_CONFIG": str(config)}
    with psycopg.connect(db18.dsn) as writer:  # an open write on the week: the copy waits
        writer.execute("INSERT INTO account_balances VALUES ('2024-01-08', 'x', 1, 'a', '{}')")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "consolidate", "account_balances", "--apply",
             "--yes", "-d", db18.dsn], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60  # a loaded machine can be slow to start a process
        watch = psycopg.connect(db18.dsn, autocommit=True)  # activity is per-transaction cached
        while time.monotonic() < deadline and proc.poll() is None:  # until the plan waits
            row = watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgparts plan'"
                " AND wait_event_type = 'Lock'").fetchone()
            if row[0]:
                break
            time.sleep(0.1)
        watch.close()
        if not row[0]:
            proc.kill()
            pytest.fail(f"the plan never waited for the lock: {proc.communicate()}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        writer.rollback()
    assert proc.returncode == 130, err
    assert "consolidation cancelled" in err and "Traceback" not in err
    assert "database state:" in err and "unchanged" in err
    with db18.connect() as conn:
        assert f"{b.weeks[0]}_consolidated" not in user_tables(conn, "public")
