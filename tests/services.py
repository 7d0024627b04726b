"""Start real, isolated Redis servers and PostgreSQL databases for the test suite.

Plain helpers (no pytest import): fixtures in conftest.py wrap them.

- ``RedisServer.start(tmp_path)`` runs a private ``redis-server`` on a free loopback port.
- ``PostgresDatabase.create()`` makes a fresh ``sbtest_<hex>`` database on the running
  PostgreSQL server named by ``SWITCHBOARD_TEST_PG_ADMIN_URL``
  (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
# The providers and receivers the tests and benchmarks stand up listen on loopback, over
# plain http: outbound requests may reach them (hub/fetch.py refuses both by default).
LOCAL_TARGETS = {"SWITCHBOARD_OUTBOUND_HTTP": "true",
                 "SWITCHBOARD_OUTBOUND_ALLOW": '["127.0.0.0/8", "::1"]'}
PG_ADMIN_URL_ENV = "SWITCHBOARD_TEST_PG_ADMIN_URL"
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_DB_PREFIX = "sbtest_"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- Redis

_live_redis: set[RedisServer] = set()


class LoopbackServer:
    """An ASGI app served by uvicorn on a loopback port, in the test's event loop (the local
    stand-ins for providers and receivers)."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve until stop()."""
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving."""
        self._server.should_exit = True
        if self._task is not None:
            await self._task


@atexit.register
def _kill_leftover_redis() -> None:
    """Kill Redis servers a crashed or careless test left running."""
    for server in list(_live_redis):
        server.kill()


def find_redis_server() -> str:
    """Return the path of the redis-server binary or raise RuntimeError."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    raise RuntimeError("redis-server not found (install it: apt-get install redis-server)")


class RedisServer:
    """A private redis-server subprocess on a loopback port, keeping nothing on disk."""

    def __init__(self, tmpdir: Path, port: int, binary: str | None = None, *,
                 appendonly: bool = False) -> None:
        """Describe a server; call start() / restart() to run it. `appendonly`: it persists
        every write before answering (AOF, fsync always), as production should."""
        self.tmpdir = Path(tmpdir)
        self.port = port
        self.binary = binary or find_redis_server()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, tmpdir: Path, *, timeout: float = 15.0, appendonly: bool = False
              ) -> RedisServer:
        """Launch redis-server on a free port under tmpdir and wait until it answers PING."""
        last_error: Exception | None = None
        for _attempt in range(5):  # another process may grab the port between probe and bind
            server = cls(tmpdir, free_port(), appendonly=appendonly)
            try:
                server._launch(timeout)
            except RuntimeError as exc:
                last_error = exc
                continue
            return server
        raise RuntimeError(f"could not start redis-server: {last_error}")

    @property
    def url(self) -> str:
        """Return the redis:// URL of database 0."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """Return the path of this server's log file."""
        return self.tmpdir / f"redis-{self.port}.log"

    @property
    def running(self) -> bool:
        """Return True while the subprocess is alive."""
        return self.proc is not None and self.proc.poll() is None

    def ping(self, timeout: float = 1.0) -> bool:
        """Return True if the server answers PING now."""
        client = redis.Redis(
            host=LOOPBACK,
            port=self.port,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # the default retries take seconds to give up
        )
        try:
            return bool(client.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False
        finally:
            client.close()

    def client(self, *, retry: bool = True) -> redis.Redis:
        """Return a new sync client (the caller closes it); retry=False fails fast when down."""
        if retry:
            return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
        return redis.Redis.from_url(
            self.url, socket_connect_timeout=2, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def kill(self) -> None:
        """Kill the server with SIGKILL and wait for it, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """Stop the server with SIGTERM and wait for it (SIGKILL after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def restart(self, *, timeout: float = 15.0) -> None:
        """Stop the server if it runs, then start it again on the same port."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:  # the old socket may linger for a moment
            try:
                self._launch(max(deadline - time.monotonic(), 1.0))
                return
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def _launch(self, timeout: float) -> None:
        """Spawn the subprocess on self.port and wait until it answers PING."""
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--dir", str(self.tmpdir),
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        _live_redis.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reap()
                raise RuntimeError(f"redis-server on port {self.port} exited: {self._log_tail()}")
            if self.ping(timeout=0.5):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not answer: {self._log_tail()}")

    def _reap(self) -> None:
        """Wait for the subprocess and forget it."""
        if self.proc is not None:
            self.proc.wait()
        self.proc = None
        _live_redis.discard(self)

    def _log_tail(self, lines: int = 5) -> str:
        """Return the last lines of the server log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> Self:
        """Return self; the server is already running."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Show URL and state."""
        return f"<RedisServer {self.url} running={self.running}>"


# --------------------------------------------------------------------------- PostgreSQL


def default_admin_url() -> str:
    """Return the admin URL from SWITCHBOARD_TEST_PG_ADMIN_URL or the default."""
    return os.environ.get(PG_ADMIN_URL_ENV) or DEFAULT_PG_ADMIN_URL


def _asyncpg_dsn(url: str) -> str:
    """Turn a SQLAlchemy-style URL (postgresql+asyncpg://) into one asyncpg accepts."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def _with_database(url: str, name: str) -> str:
    """Return url with its database (path) replaced by name."""
    parts = urlsplit(_asyncpg_dsn(url))
    return urlunsplit(parts._replace(path=f"/{name}"))


def _quote_ident(name: str) -> str:
    """Quote a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion with asyncio.run in a fresh thread.

    Always a thread: it works whether or not the caller is inside an event loop (pytest-asyncio
    fixtures), and never replaces the caller's thread's current event loop.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sbtest-pg") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def _connect(url: str, timeout: float = 10.0) -> asyncpg.Connection:
    """Open an asyncpg connection to url."""
    return await asyncpg.connect(_asyncpg_dsn(url), timeout=timeout)


def postgres_available(admin_url: str | None = None, timeout: float = 3.0) -> bool:
    """Return True if the PostgreSQL server at admin_url accepts a connection and a query."""
    url = admin_url or default_admin_url()

    async def probe() -> bool:
        conn = await _connect(url, timeout)
        try:
            return bool(await conn.fetchval("SELECT 1") == 1)
        finally:
            await conn.close()

    try:
        return _run(probe)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


class PostgresDatabase:
    """A throwaway database (sbtest_<hex>) on a running PostgreSQL server."""

    def __init__(self, name: str, admin_url: str) -> None:
        """Describe an existing database; use create() or create_from_template() to make one."""
        self.name = name
        self.admin_url = admin_url
        self.dropped = False

    @classmethod
    def create(cls, admin_url: str | None = None) -> PostgresDatabase:
        """Create an empty database with a random name and return it."""
        return cls._create(admin_url, template=None)

    @classmethod
    def create_from_template(cls, template: str, admin_url: str | None = None) -> PostgresDatabase:
        """Create a database as a copy of template (CREATE DATABASE ... TEMPLATE ...)."""
        return cls._create(admin_url, template=template)

    @classmethod
    def _create(cls, admin_url: str | None, template: str | None) -> PostgresDatabase:
        """Run CREATE DATABASE, retrying while the template still has connections."""
        db = cls(f"{TEST_DB_PREFIX}{secrets.token_hex(6)}", admin_url or default_admin_url())
        sql = f"CREATE DATABASE {_quote_ident(db.name)}"
        if template is not None:
            sql += f" TEMPLATE {_quote_ident(template)}"

        async def create() -> None:
            conn = await _connect(db.admin_url)
            try:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        await conn.execute(sql)
                        return
                    except asyncpg.exceptions.ObjectInUseError:  # template: a session is closing
                        if time.monotonic() >= deadline:
                            raise
                        await asyncio.sleep(0.1)
            finally:
                await conn.close()

        _run(create)
        return db

    @property
    def url(self) -> str:
        """Return the postgresql:// URL of this database (asyncpg / libpq form)."""
        return _with_database(self.admin_url, self.name)

    @property
    def sqlalchemy_url(self) -> str:
        """Return the postgresql+asyncpg:// URL of this database for SQLAlchemy."""
        return self.url.replace("postgresql://", "postgresql+asyncpg://", 1).replace(
            "postgres://", "postgresql+asyncpg://", 1
        )

    def exists(self) -> bool:
        """Return True if the database exists on the server."""

        async def check() -> bool:
            conn = await _connect(self.admin_url)
            try:
                row = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.name)
                return bool(row == 1)
            finally:
                await conn.close()

        return _run(check)

    def drop(self) -> None:
        """Terminate other connections to the database, then drop it (idempotent)."""
        if self.dropped:
            return

        async def drop() -> None:
            conn = await _connect(self.admin_url)
            try:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()",
                    self.name,
                )
                force = " WITH (FORCE)" if conn.get_server_version().major >= 13 else ""
                await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(self.name)}{force}")
            finally:
                await conn.close()

        _run(drop)
        self.dropped = True

    def __enter__(self) -> Self:
        """Return self; the database already exists."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Drop the database."""
        self.drop()

    def __repr__(self) -> str:
        """Show the URL."""
        return f"<PostgresDatabase {self.url}>"


# --------------------------------------------------------------------------- a private PostgreSQL


def find_pg_bin(name: str) -> str:
    """The newest installed PostgreSQL server binary `name` (Debian layout), or PATH's."""
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if candidates:
        return str(candidates[-1])
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found (install postgresql)")
    return found


class PostgresServer:
    """A private PostgreSQL server (its own cluster in a temp dir, on a free port) that a test
    may stop and start, as an outage, without touching the shared server.

    initdb refuses to run as root: as root, the cluster belongs to the `postgres` user and
    every server command runs as that user (runuser); its folder is a fresh one under the
    system's temp dir, which that user can reach (pytest's own temp dirs are private).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.data = self.root / "pgdata"
        self.sockets = self.root / "sock"
        self.port = free_port()
        self.log_path = self.root / "postgres.log"

    @classmethod
    def create(cls) -> PostgresServer:
        """Make a cluster and start it."""
        server = cls(Path(tempfile.mkdtemp(prefix="sbtest-pg-")))
        server.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(server.root, "postgres")
            shutil.chown(server.sockets, "postgres")
        server._run(find_pg_bin("initdb"), "-D", str(server.data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-sync")
        server.start()
        return server

    def _run(self, *args: str, timeout: float = 120.0) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                check=False, cwd="/")
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stdout}{result.stderr}")

    @property
    def admin_url(self) -> str:
        """postgresql:// URL of its `postgres` database."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it answers."""
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses={LOOPBACK} "
                   "-c max_connections=200 -c fsync=off -c full_page_writes=off")
        self._run(find_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log_path),
                  "-o", options, "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10)
        deadline = time.monotonic() + timeout
        while not postgres_available(self.admin_url, timeout=2):
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not come up")
            time.sleep(0.1)

    def stop(self, *, crash: bool = True) -> None:
        """Stop it: `immediate` (as a crash: connections cut, no checkpoint) or `fast`."""
        self._run(find_pg_bin("pg_ctl"), "-D", str(self.data), "-m",
                  "immediate" if crash else "fast", "-w", "stop")

    def destroy(self) -> None:
        """Stop it (if running) and delete the cluster."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
