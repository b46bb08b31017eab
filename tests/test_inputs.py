"""Whatever a user or a shell hands the real `pgparts` process: one line on stderr and exit 2 for
a mistake, a quiet exit for a closed pipe, never a traceback and never a password.

Every case runs `python -m tui.cli` in a subprocess: closed descriptors, /dev/full, encodings and
terminals only behave for real in a process of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui.core.connection import Target, redact

from .layouts import build_awkward
from .test_plan_support import OLD_WEEKS, build_balances

REPO = Path(__file__).resolve().parent.parent
SECRET = "Tr0ub4dor"


def pgparts(*argv: str, env: dict[str, str] | None = None, shell_redirect: str = "",
            **kw) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI; `shell_redirect` (e.g. '>&-') is applied by a shell around it."""
    full_env = {**os.environ, **(env or {})}
    command = [sys.executable, "-m", "tui.cli", *argv]
    if shell_redirect:
        command = ["sh", "-c", f'exec "$@" {shell_redirect}', "sh", *command]
    if "input" not in kw:
        kw.setdefault("stdin", subprocess.DEVNULL)
    if "stdout" not in kw:
        kw["stdout"] = subprocess.PIPE
    return subprocess.run(command, stderr=subprocess.PIPE, timeout=60, cwd=REPO, env=full_env,
                          **kw)


def one_line_error(done: subprocess.CompletedProcess[bytes], *fragments: str) -> str:
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgparts: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def balances(db18):
    with db18.connect() as conn:
        build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=20)
    return db18


# -- passwords never reach stderr ------------------------------------------------------------
MALFORMED = [
    f"host=x password={SECRET} and3more",  # an unquoted space: libpq echoes the rest
    f"host=x {SECRET}",  # a bare word
    f"postgresql://alice:{SECRET}@[::1/db",  # an unclosed IPv6 bracket: the URI is echoed whole
    f"postgresql://alice:{SECRET}%zz@h/db",  # bad %-encoding in the password
    f"postgresq://alice:{SECRET}@h/db",  # a misspelt scheme reads as one bare word
    f"postgresql://h/db?password={SECRET}%zz",  # bad %-encoding in the query's password
]


@pytest.mark.parametrize("dsn", MALFORMED)
def test_malformed_dsn_never_shows_the_password(dsn, tmp_path):
    secrets = (SECRET, "and3more")
    for done in (pgparts("tree", "-d", dsn), pgparts(dsn)):  # a command, the console
        line = one_line_error(done, "malformed connection string")
        assert not any(s in line for s in secrets), line
    config = tmp_path / "c.toml"
    config.write_text(f"[profiles.p]\ndsn = '''{dsn}'''\n")
    config.chmod(0o600)
    line = one_line_error(pgparts("check", "--config", str(config), "--profile", "p"),
                          "profile 'p'", "malformed connection string")
    assert not any(s in line for s in secrets), line


def test_stray_password_argument_is_not_echoed():
    done = pgparts("tree", "-d", "host=x", "events", f"password={SECRET}")
    err = done.stderr.decode()
    assert done.returncode == 2 and "unrecognized arguments" in err
    assert SECRET not in err and "Traceback" not in err


def test_no_space_password_in_readable_config_warns(db18, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[profiles.p]\ndsn = \"{db18.dsn} dbname='{db18.name}'password={SECRET}\"\n")
    config.chmod(0o644)
    done = pgparts("tree", "--config", str(config), "--profile", "p")
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "holds a password" in err and "chmod 600" in err and SECRET not in err


# -- connection strings and arguments --------------------------------------------------------
@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example.com", ".a"])
def test_bad_host_names(host):
    one_line_error(pgparts("tree", "-d", f"host={host} connect_timeout=2"), "not a valid host name")


def test_older_than_out_of_range_or_empty(balances):
    d = ("-d", balances.dsn)
    one_line_error(pgparts("consolidate", "account_balances", "--older-than", "20000years",
                           "--dry-run", *d), "--older-than", "at most 1000 years")
    one_line_error(pgparts("consolidate", "account_balances", "--older-than", "", "--dry-run",
                           *d), "--older-than", "expected an age")
    one_line_error(pgparts("consolidate", "account_balances", "--older-than", "0 days",
                           "--dry-run", *d), "--older-than", "more than zero")


def test_version():
    done = pgparts("--version")
    assert done.returncode == 0, done.stderr
    name, version = done.stdout.decode().split()
    assert name == "pgparts" and version[0].isdigit()


# -- standard output and input ---------------------------------------------------------------
def test_closed_stdout(db18):
    one_line_error(pgparts("tree", "-d", db18.dsn, shell_redirect=">&-"),
                   "standard output is closed")


@pytest.mark.parametrize("argv", [
    ("tree",),
    ("consolidate", "account_balances", "--older-than", "1 week", "--dry-run"),
    ("explain", "SELECT * FROM public.account_balances"),
])
def test_stdout_full_or_broken_pipe(balances, argv):
    with open("/dev/full", "wb") as full:
        one_line_error(pgparts(*argv, "-d", balances.dsn, stdout=full),
                       "cannot write the output", "No space left on device")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone, like `| head` after its lines
    try:
        done = pgparts(*argv, "-d", balances.dsn, stdout=write_end)
    finally:
        os.close(write_end)
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()


@pytest.mark.parametrize("argv", [
    ("consolidate", "account_balances", "status"),
    ("consolidate", "account_balances", "--older-than", "1 week", "--dry-run"),
    ("explain", "SELECT * FROM public.account_balances"),
    ("tree",),
])
def test_stdout_that_cannot_encode_arrows(balances, argv):
    done = pgparts(*argv, "-d", balances.dsn, env={"PYTHONIOENCODING": "latin-1"})
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode("latin-1")
    assert "->" in out and "→" not in out and "account_balances" in out


def test_client_encoding_from_the_environment_is_overridden(db18):
    build_awkward(db18)
    db18.execute('CREATE TABLE public."événements" (ts date) PARTITION BY RANGE (ts)')
    db18.execute('CREATE TABLE public."événements_1" PARTITION OF public."événements" '
                 "FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')")
    plain = pgparts("tree", "-d", db18.dsn)
    for encoding in ("SQL_ASCII", "LATIN1"):
        done = pgparts("tree", "-d", db18.dsn, env={"PGCLIENTENCODING": encoding})
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout == plain.stdout and "événements_1" in done.stdout.decode()


@pytest.mark.parametrize("query", [
    " UNION ALL ".join(["SELECT 1"] * 30000),  # passes PostgreSQL's depth check
    "SELECT " + " + ".join(["1"] * 50000),  # refused by it
], ids=["union-30000", "plus-50000"])
def test_explain_of_a_very_deep_statement_is_one_line(db18, query, tmp_path):
    """pglast builds its Python tree recursively: a deep statement overflowed the C stack and
    killed the process (SIGSEGV) instead of a one-line answer. A CI job explaining query files
    from pull requests must get one line and exit 2 at worst."""
    path = tmp_path / "deep.sql"
    path.write_text(query)
    done = pgparts("explain", "-f", str(path), "-d", db18.dsn)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode in (0, 2), (done.returncode, err[-300:])
    assert "Traceback" not in err
    if done.returncode == 2:
        assert len(err.strip().splitlines()) == 1, err[-300:]


@pytest.mark.parametrize("data", [b"SELECT \xff\xfe 1", b"\x00\x01\x02SELECT 1", b"\x89PNG\r\n"])
def test_explain_refuses_binary_input(db18, data, tmp_path):
    line = one_line_error(pgparts("explain", "-f", "-", "-d", db18.dsn, input=data),
                          "standard input is not UTF-8 text")
    assert "\\x" not in line and "PNG" not in line
    path = tmp_path / "q.sql"
    path.write_bytes(data)
    one_line_error(pgparts("explain", "-f", str(path), "-d", db18.dsn), "is not UTF-8 text")


def test_explain_with_closed_stdin(db18):
    one_line_error(pgparts("explain", "-f", "-", "-d", db18.dsn, shell_redirect="<&-"),
                   "standard input is closed")


def test_console_needs_a_terminal(db18, tmp_path):
    done = pgparts(db18.dsn)  # stdin from /dev/null, stdout a pipe
    one_line_error(done, "needs a terminal")
    assert done.stdout == b""  # nothing drawn into the pipe
    # --demo is refused before it starts a server
    dirs = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_STATE_HOME": str(tmp_path / "state")}
    one_line_error(pgparts("--demo", env=dirs), "needs a terminal")
    assert not (tmp_path / "cache").exists()


# -- redact() itself -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "dsn", "expected"),
    [
        ("host=db password=hunter22 dbname=x", "", "host=db password=*** dbname=x"),
        ("host=db password = 'two words' x", "", "host=db password = *** x"),
        ("dbname='x'password=hunter22", "", "dbname='x'password=***"),
        ('in URI: "postgresql://al:hunter22@[::1/db"', "", 'in URI: "postgresql://al:***@[::1/db"'),
        ("x?sslmode=require&password=hunter22&a=b", "", "x?sslmode=require&password=***&a=b"),
        ("sslpassword=keypass sslkey=/k", "", "sslpassword=*** sslkey=/k"),
        ('missing "=" after "hunter22" in connection info string', "host=x hunter22",
         'missing "=" after "***" in connection info string'),
        ('missing "=" after "dbname" in connection info string', "host=x dbname",
         'missing "=" after "dbname" in connection info string'),
        ('invalid percent-encoded token: "hunter22%zz"', "postgresql://al:hunter22%zz@h/db",
         'invalid percent-encoded token: "***"'),
        ('invalid connection option "colour"', "host=x password=pw colour=blue",
         'invalid connection option "colour"'),
        ('cannot connect to x@h: password authentication failed for user "x"', "", None),
    ],
)
def test_redact(text, dsn, expected):
    assert redact(text, dsn) == (text if expected is None else expected)


def test_json_on_an_ascii_stdout_stays_exact(db18):
    """Letters the output encoding lacks become JSON escapes: the names survive intact."""
    with db18.connect() as conn:
        b = build_balances(conn, parent="soldés", weeks=OLD_WEEKS[:1], rows_per_week=5)
    done = pgparts("consolidate", "soldés", "status", "--json", "-d", db18.dsn,
                   env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0, done.stderr.decode()
    data = json.loads(done.stdout.decode("ascii"))
    assert data["parent"] == '"soldés"'  # quoted as PostgreSQL would need it
    assert data["partitions"][0]["partition"] == f'"{b.weeks[0]}"'


@pytest.mark.parametrize("dsn", [f"postgresql://alice:{SECRET[:4]}@{SECRET[4:]}@h/db",
                                 f"postgresql://alice:{SECRET[:5]}@{SECRET[5:8]}@[::1/db"])
def test_a_password_with_an_unencoded_at_sign_stays_hidden(dsn, tmp_path):
    """libpq ends the password at its first '@' and reads the rest as part of the host name,
    which every connection message names (and the journal's server field)."""
    rest = dsn.split("@")[1]
    line = one_line_error(pgparts("tree", "-d", dsn), "cannot connect to")
    assert SECRET[:4] not in line and rest not in line, line
    assert rest not in Target(dsn).describe()
