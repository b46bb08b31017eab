"""Private servers (the tests', the benchmarks', the demo's) admit only the user who started them.

Another local account must not reach the superuser: the socket directory and the socket are
private, and pg_hba.conf has no `trust` line. The other account is `nobody`, run through
subprocess as root; without root there is no second account to try, and those tests skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tui.demo.localserver import (
    FAST_TEST_SETTINGS,
    IDENT_MAP,
    LocalServer,
    LocalServerError,
    access_rules,
    install_copy_dir,
    temporary_server,
    usable_bindir,
)

from .conftest import Server

AS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not AS_ROOT, reason="trying another OS user needs root (to run psql as `nobody`)"
)


def psql_as(
    os_user: str, bindir: Path, socket_dir: Path, role: str = "postgres",
    password: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `SELECT current_user` through `bindir`'s psql as OS user `os_user`."""
    account = pwd.getpwnam(os_user)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "LC_ALL": "C.UTF-8", "PGCONNECT_TIMEOUT": "5"}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(
        [str(bindir / "psql"), "-w", "-X", "-At", "-h", str(socket_dir), "-p", "5432",
         "-U", role, "-d", "postgres", "-c", "SELECT current_user"],
        capture_output=True, text=True, timeout=30, env=env, cwd="/",
        user=account.pw_uid, group=account.pw_gid, extra_groups=[],
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _hba_methods(server: Server) -> set[str]:
    with server.admin() as c:
        rows = c.execute("SELECT type, auth_method, error FROM pg_hba_file_rules").fetchall()
    assert all(error is None for _type, _method, error in rows), rows
    assert {kind for kind, _method, _error in rows} == {"local"}  # nothing over TCP
    return {method for _type, method, _error in rows}


def test_files_and_socket_are_private(pg: Server):
    local = pg.local
    assert local.socket_dir is not None
    owner = local.datadir.stat().st_uid
    socket = local.socket_dir / ".s.PGSQL.5432"
    assert _mode(local.socket_dir) == 0o700 and local.socket_dir.stat().st_uid == owner
    assert _mode(socket) == 0o700
    assert _mode(local.datadir) == 0o700
    assert _mode(local.datadir / "server.log") & 0o077 == 0, "server.log is readable by others"
    for name in ("pg_hba.conf", "pg_ident.conf"):
        assert _mode(local.datadir / name) == 0o600
    with pg.admin() as c:
        assert c.execute("SHOW listen_addresses").fetchone() == ("",)
    assert _hba_methods(pg) == {"peer", "scram-sha-256"}
    assert "trust" not in (local.datadir / "pg_hba.conf").read_text()


def test_the_starting_user_connects_as_the_superuser(pg: Server):
    with pg.admin() as c:
        row = c.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row == ("postgres", True)
    with pg.admin() as c:
        mapped = c.execute(
            "SELECT sys_name, pg_username FROM pg_ident_file_mappings WHERE map_name = %s",
            (IDENT_MAP,),
        ).fetchall()
    names = {pwd.getpwuid(uid).pw_name for uid in (os.geteuid(), pg.local.datadir.stat().st_uid)}
    assert sorted(mapped) == sorted((name, "postgres") for name in names)


@needs_root
def test_the_server_os_user_connects_too(pg: Server):
    assert pg.local.socket_dir is not None
    server_user = pwd.getpwuid(pg.local.datadir.stat().st_uid).pw_name
    done = psql_as(server_user, pg.local.bindir, pg.local.socket_dir)
    assert (done.returncode, done.stdout) == (0, "postgres\n"), done.stderr


@needs_root
def test_another_os_user_cannot_connect(pg: Server):
    assert pg.local.socket_dir is not None
    for role, password in (("postgres", None), ("postgres", "postgres"), ("nobody", None)):
        done = psql_as("nobody", pg.local.bindir, pg.local.socket_dir, role, password)
        assert done.returncode != 0 and done.stdout == ""
        assert "Permission denied" in done.stderr, done.stderr


@pytest.fixture
def opened_up(pg: Server) -> Iterator[LocalServer]:
    """A server of its own whose socket directory the test may open up to everybody."""
    with temporary_server(pg.local.bindir, dict(FAST_TEST_SETTINGS)) as server:
        yield server


@needs_root
def test_each_layer_refuses_another_user_on_its_own(opened_up: LocalServer):
    """Were the directory or the socket opened up by mistake, the next layer still refuses."""
    server, socket_dir = opened_up, opened_up.socket_dir
    assert socket_dir is not None
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        c.execute("CREATE ROLE app LOGIN PASSWORD 'right horse battery'")

    socket_dir.chmod(0o755)
    done = psql_as("nobody", server.bindir, socket_dir)
    assert done.returncode != 0 and "Permission denied" in done.stderr, done.stderr  # the socket

    (socket_dir / ".s.PGSQL.5432").chmod(0o777)
    done = psql_as("nobody", server.bindir, socket_dir)
    assert done.returncode != 0
    assert 'Peer authentication failed for user "postgres"' in done.stderr, done.stderr
    done = psql_as("nobody", server.bindir, socket_dir, "app", "wrong")
    assert done.returncode != 0
    assert 'password authentication failed for user "app"' in done.stderr, done.stderr
    done = psql_as("nobody", server.bindir, socket_dir, "app", "right horse battery")
    assert (done.returncode, done.stdout) == (0, "app\n"), done.stderr  # a password is enough


def test_other_roles_need_a_password(opened_up: LocalServer, monkeypatch, tmp_path):
    """Peer authentication admits the superuser only: the starting user is not `app`."""
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with psycopg.connect(opened_up.conninfo(), autocommit=True) as c:
        c.execute("CREATE ROLE app LOGIN PASSWORD 'right horse battery'")
    app = opened_up.conninfo().replace("user=postgres", "user=app")
    # each attempt in a process of its own: late in a full run, SCRAM in the test process
    # failed with libpq's "could not generate nonce" (its bundled OpenSSL's random source)
    probe = ("import sys, psycopg\n"
             "try:\n"
             "    with psycopg.connect(sys.argv[1], connect_timeout=5) as c:\n"
             "        print(c.execute('SELECT current_user').fetchone()[0])\n"
             "except psycopg.OperationalError as exc:\n"
             "    print(exc)\n")

    def attempt(dsn: str) -> str:
        return subprocess.run([sys.executable, "-c", probe, dsn], capture_output=True,
                              text=True, timeout=30, check=True).stdout

    assert "no password supplied" in attempt(app)
    assert attempt(f"{app} password='right horse battery'").strip() == "app"


def test_access_rules_quote_names_and_refuse_unquotable_ones():
    rules = access_rules("postgres", None)
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert f'{IDENT_MAP} "{me}" "postgres"' in rules["pg_ident.conf"].splitlines()
    assert 'local all "postgres" peer map=pgparts' in rules["pg_hba.conf"].splitlines()
    with pytest.raises(LocalServerError, match="unusable name"):
        access_rules('post"gres', None)
    # run as root, the server's own OS user is mapped too (once, when it is ourselves)
    other = pwd.getpwnam("nobody")
    ident = [line for line in access_rules("postgres", other)["pg_ident.conf"].splitlines()
             if not line.startswith("#")]
    assert ident == [f'{IDENT_MAP} "{me}" "postgres"', f'{IDENT_MAP} "nobody" "postgres"']
    mine = pwd.getpwuid(os.geteuid())
    assert len(access_rules("postgres", mine)["pg_ident.conf"].splitlines()) == 2


def test_stopping_through_a_fresh_handle_removes_the_socket_directory(pg: Server):
    """Fixtures stop a server with a new LocalServer that never knew its socket directory."""
    with temporary_server(pg.local.bindir, dict(FAST_TEST_SETTINGS)) as server:
        socket_dir = server.socket_dir
        assert socket_dir is not None and socket_dir.is_dir()
        LocalServer(server.bindir, server.datadir).stop("immediate")
        assert not server.running and not socket_dir.exists()


def _forge_pid_file_socket_dir(datadir: Path, socket_dir: Path) -> None:
    """What the server's OS user can do: its data directory, its pid file."""
    pidfile = datadir / "postmaster.pid"
    lines = pidfile.read_text().splitlines()
    lines[4] = str(socket_dir)
    pidfile.write_text("\n".join(lines) + "\n")


def test_a_socket_directory_named_by_the_pid_file_is_only_ever_ours(opened_up: LocalServer,
                                                                     tmp_path: Path):
    """The pid file (writable by the server's OS user) names the socket directory that a later
    start tightens: a directory elsewhere, or a link to one, keeps its owner and mode."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    victim.chmod(0o755)
    link = Path("/tmp") / f"pgparts-link-{os.getpid()}"
    link.symlink_to(victim)
    try:
        for forged in (victim, link):
            _forge_pid_file_socket_dir(opened_up.datadir, forged)
            handle = LocalServer(opened_up.bindir, opened_up.datadir)
            handle._adopt_socket_dir()
            assert handle.socket_dir == forged
            with pytest.raises(LocalServerError):
                handle.enforce_access()
            st = victim.stat()
            assert (st.st_uid, _mode(victim)) == (os.geteuid(), 0o755), forged
    finally:
        link.unlink()


def test_the_access_rules_are_never_written_through_a_planted_link(opened_up: LocalServer,
                                                                    tmp_path: Path):
    """pg_hba.conf is written to a temporary file in the data directory, which the server's OS
    user owns: a link it planted under that name must not make us write (as root) elsewhere."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    (opened_up.datadir / "pg_hba.conf").write_text("# edited\n")  # so the rules get rewritten
    planted = opened_up.datadir / f".pg_hba.conf.{os.getpid()}"
    planted.symlink_to(victim)
    opened_up.enforce_access()
    assert victim.read_text() == "precious\n"
    assert (victim.stat().st_uid, _mode(victim)) == (os.geteuid(), 0o644)
    assert "scram-sha-256" in (opened_up.datadir / "pg_hba.conf").read_text()
    assert not planted.exists() and not planted.is_symlink()


@needs_root
def test_a_planted_copy_of_the_binaries_is_refused(tmp_path: Path):
    """As root, binaries the server user cannot reach are copied to a predictable directory in
    /tmp and run from there as the server user: another user's tree planted under that name
    (with its own `postgres`) must be refused, not run."""
    tmp_path.chmod(0o700)  # unreachable for the server user: usable_bindir() copies
    bindir = tmp_path / "site" / "pkg" / "pginstall" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "postgres").write_text("#!/bin/sh\n")
    target = install_copy_dir(bindir.parent)
    planted = target / "pkg" / "pginstall" / "bin"
    planted.mkdir(parents=True)
    (planted / "postgres").write_text("#!/bin/sh\ntouch /tmp/pwned\n")
    nobody = pwd.getpwnam("nobody")
    try:
        for root, dirs, files in os.walk(target):
            for name in (*dirs, *files, "."):
                os.chown(os.path.join(root, name), nobody.pw_uid, nobody.pw_gid)
        with pytest.raises(LocalServerError, match="another user"):
            usable_bindir(bindir)
    finally:
        shutil.rmtree(target)
