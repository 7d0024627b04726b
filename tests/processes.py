"""Run Switchboard as real processes (`web`, `worker`, `serve`) for multi-process tests and bench/.

Plain helpers (no pytest import), usable from tests/test_processes.py and bench/inbound.py:

- ``Proc``: one `switchboard <command>` subprocess with its own env and log file; start, wait
  until /readyz answers, ``kill()`` (SIGKILL, as a crash), ``stop()``, ``restart()``.
- ``ProcessStack``: the services of one shape (a private Redis + a fresh PostgreSQL database,
  or a temp data dir for the embedded SQLite shape), ``migrate``/``createuser``, and the
  processes started on it; ``close()`` kills everything and drops the database.
- ``login`` (an httpx client with the session cookie and the CSRF header), ``bootstrap``
  (admin + API inbox), ``EventCollector`` (an agent websocket that records events),
  ``post_messages`` (signed inbound messages per sender, in order, with bounded concurrency
  and provider-style retries).

Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from channels.api import signed_headers
from tests.services import LOCAL_TARGETS, LOOPBACK, PostgresDatabase, RedisServer, free_port

ADMIN_EMAIL = "admin@proc.switchboard.test"
ADMIN_PASSWORD = "correct horse battery staple"
API_SECRET = "process-test-secret-0123456789"
REDIS_PREFIX = "sb:"
INBOUND_GROUP = "inbox"  # hub.worker.INBOUND_GROUP


def switchboard_binary() -> str:
    """The `switchboard` command of the running virtualenv."""
    here = Path(sys.executable).parent / "switchboard"
    if here.exists():
        return str(here)
    found = shutil.which("switchboard")
    if found is None:
        raise RuntimeError("the switchboard command is not installed (pip install -e .)")
    return found


# --------------------------------------------------------------------------- processes

_live: set[Proc] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Kill processes a crashed test left running."""
    for proc in list(_live):
        proc.kill()


class ProcessFailed(RuntimeError):
    """A process exited or did not become ready; the message carries its log tail."""


class Proc:
    """One `switchboard <command>` subprocess; stdout+stderr go to `<log_dir>/<name>.log`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: dict[str, str],
        *,
        cwd: Path,
        log_dir: Path,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.env = env
        self.cwd = cwd
        self.port = port
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port> of a listening process."""
        if self.port is None:
            raise ValueError(f"{self.name} does not listen")
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The agent websocket URL of a listening process."""
        return f"ws://{LOOPBACK}:{self.port}/api/v1/ws"

    @property
    def pid(self) -> int | None:
        """Pid of the running subprocess."""
        return self.popen.pid if self.popen is not None else None

    @property
    def alive(self) -> bool:
        """True while the subprocess runs."""
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> Proc:
        """Spawn the subprocess (appending to its log); returns self."""
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"===== start #{self.starts}: {' '.join(self.command)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                [switchboard_binary(), *self.command],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the test run is not delivered to it
            )
        _live.add(self)
        return self

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until GET /readyz answers 200 (web, serve) or the process stays up (worker)."""
        deadline = time.monotonic() + timeout
        if self.port is None:
            await asyncio.sleep(0.3)
            self.check_alive()
            return
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                self.check_alive()
                try:
                    response = await client.get(f"{self.base_url}/readyz")
                    # Another process may hold the port: this one lost the race for it
                    # and is about to exit, while the other answers in its place.
                    if response.status_code == 200 and self._holds_port():
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ProcessFailed(
                        f"{self.name} not ready after {timeout:.0f}s\n{self.log_tail()}"
                    )
                await asyncio.sleep(0.1)

    def _holds_port(self) -> bool:
        """Whether the socket listening on this process's port is this process's (Linux)."""
        assert self.popen is not None and self.port is not None
        listening = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    if fields[1].endswith(f":{self.port:04X}") and fields[3] == "0A":  # LISTEN
                        listening.add(f"socket:[{fields[9]}]")
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{self.popen.pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in listening:
                        return True
        return False

    def check_alive(self) -> None:
        """Raise ProcessFailed (with the log tail) when the process has exited."""
        if self.popen is None:
            raise ProcessFailed(f"{self.name} was never started")
        code = self.popen.poll()
        if code is not None:
            raise ProcessFailed(f"{self.name} exited with code {code}\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the process and reap it, as a crash would (no shutdown code runs)."""
        if self.popen is not None:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()
        _live.discard(self)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL after `timeout`)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.kill()

    async def restart(self, timeout: float = 30.0) -> None:
        """Kill (if running), start again with the same settings, wait until ready."""
        self.kill()
        self.start()
        await self.wait_ready(timeout)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"--- {self.name}: (no log)"
        tail = text.rstrip().splitlines()[-lines:]
        return f"--- {self.name} ({self.log_path}):\n" + "\n".join(tail)

    def __repr__(self) -> str:
        """Name, pid and port."""
        return f"<Proc {self.name} pid={self.pid} port={self.port} alive={self.alive}>"


class ProcessStack:
    """The servers of one deployment shape and the Switchboard processes started on them.

    shape "production": a private redis-server and a fresh PostgreSQL database;
    shape "embedded": SQLite and the SQLite-file bus under a data dir. Use as
    ``async with ProcessStack(tmp, shape) as stack`` or call ``start()`` / ``close()``.
    """

    def __init__(
        self,
        root: Path,
        shape: str,
        *,
        log_level: str = "info",
        claim_idle_ms: int | None = None,
        env: dict[str, str] | None = None,
        pg_admin_url: str | None = None,
        redis_appendonly: bool = False,
    ) -> None:
        if shape not in ("production", "embedded"):
            raise ValueError(f"unknown shape {shape!r}")
        self.root = Path(root)
        self.shape = shape
        self.log_level = log_level
        self.claim_idle_ms = claim_idle_ms
        self.extra_env = dict(env or {})
        self.pg_admin_url = pg_admin_url
        self.redis_appendonly = redis_appendonly
        self.data_dir = self.root / "data"
        self.log_dir = self.root / "logs"
        self.redis: RedisServer | None = None
        self.database: PostgresDatabase | None = None
        self.procs: list[Proc] = []
        self._pg: asyncpg.Connection | None = None
        self._redis_client: aioredis.Redis | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> ProcessStack:
        """Start the servers of the shape and migrate the database."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.shape == "production":
            self.redis = await asyncio.to_thread(
                lambda: RedisServer.start(self.root / "redis", appendonly=self.redis_appendonly))
            self.database = await asyncio.to_thread(PostgresDatabase.create, self.pg_admin_url)
        await asyncio.to_thread(self.migrate)
        return self

    async def close(self) -> None:
        """Kill every process, close our connections, drop the database, stop Redis."""
        for proc in self.procs:
            proc.kill()
        if self._pg is not None:
            with contextlib.suppress(Exception):
                await self._pg.close()
            self._pg = None
        if self._redis_client is not None:
            with contextlib.suppress(Exception):
                await self._redis_client.aclose()
            self._redis_client = None
        if self.database is not None:
            await asyncio.to_thread(self.database.drop)
        if self.redis is not None:
            await asyncio.to_thread(self.redis.kill)

    async def __aenter__(self) -> ProcessStack:
        """Start."""
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        """Close."""
        await self.close()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a Switchboard process on this stack."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env.update(
            PYTHONUNBUFFERED="1",
            SWITCHBOARD_DATA_DIR=str(self.data_dir),
            SWITCHBOARD_HOST=LOOPBACK,
            SWITCHBOARD_LOG_LEVEL=self.log_level,
            SWITCHBOARD_DATABASE_URL=self.database.url if self.database else "",
            SWITCHBOARD_REDIS_URL=self.redis.url if self.redis else "",
            SWITCHBOARD_REDIS_PREFIX=REDIS_PREFIX,
            **LOCAL_TARGETS,
        )
        if self.claim_idle_ms is not None:
            env["SWITCHBOARD_CLAIM_IDLE_MS"] = str(self.claim_idle_ms)
        env.update(self.extra_env)
        env.update(extra)
        return env

    def run(self, *command: str, timeout: float = 60.0, **env: str) -> str:
        """Run a one-shot `switchboard` command; return its output or raise with it."""
        result = subprocess.run(
            [switchboard_binary(), *command],
            env=self.env(**env),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ProcessFailed(
                f"switchboard {' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def migrate(self) -> None:
        """`switchboard migrate`."""
        self.run("migrate")

    def createuser(self, email: str, password: str, *, role: str = "agent", name: str = "") -> int:
        """`switchboard createuser`; returns the new agent's id."""
        out = self.run(
            "createuser", "--email", email, "--name", name or email, "--role", role,
            SWITCHBOARD_NEW_PASSWORD=password,
        )
        return int(out.rsplit("(id ", 1)[1].split(")", 1)[0])

    # ----------------------------------------------------------------- processes

    def _add(self, name: str, command: list[str], port: int | None, env: dict[str, str]) -> Proc:
        if any(p.name == name for p in self.procs):
            raise ValueError(f"a process named {name!r} exists already")
        proc = Proc(name, command, env, cwd=self.root, log_dir=self.log_dir, port=port)
        self.procs.append(proc)
        return proc.start()

    def web(self, name: str, port: int | None = None, **env: str) -> Proc:
        """Start `switchboard web` (production shape) on a free or given port."""
        port = port or free_port()
        return self._add(name, ["web"], port, self.env(SWITCHBOARD_PORT=str(port), **env))

    def worker(self, name: str, **env: str) -> Proc:
        """Start `switchboard worker`; its consumer name is `name`."""
        return self._add(name, ["worker"], None, self.env(SWITCHBOARD_WORKER_NAME=name, **env))

    def serve(self, name: str = "serve", port: int | None = None, **env: str) -> Proc:
        """Start `switchboard serve` (embedded shape: web + worker in one process)."""
        port = port or free_port()
        return self._add(
            name, ["serve"], port,
            self.env(SWITCHBOARD_PORT=str(port), SWITCHBOARD_WORKER_NAME=name, **env),
        )

    async def wait_ready(self, *procs: Proc, timeout: float = 30.0) -> None:
        """Wait until every given process (default: all) is ready.

        A process on its first start that could not bind its port (another process took the
        free port between the probe and the bind) is started again on another port.
        """

        async def ready(proc: Proc) -> None:
            for attempt in range(3):
                try:
                    await proc.wait_ready(timeout)
                    return
                except ProcessFailed:
                    if (
                        proc.port is None
                        or proc.alive
                        or proc.starts != attempt + 1
                        or "address already in use" not in proc.log_tail(10)
                        or attempt == 2
                    ):
                        raise
                proc.port = free_port()
                proc.env["SWITCHBOARD_PORT"] = str(proc.port)
                proc.start()

        await asyncio.gather(*(ready(p) for p in (procs or self.procs)))

    def logs(self, lines: int = 40) -> str:
        """Log tails of every process (for failure messages)."""
        return "\n".join(p.log_tail(lines) for p in self.procs)

    # ----------------------------------------------------------------- direct reads

    async def inbound_counts(self, inbox_id: int) -> tuple[int, int]:
        """(stored inbound messages, distinct external ids) of an inbox, straight from SQL."""
        sql = (
            "SELECT count(*), count(DISTINCT external_id) FROM messages "
            "WHERE inbox_id = {} AND direction = 'in'"
        )
        if self.database is not None:
            if self._pg is None or self._pg.is_closed():  # the server may have restarted
                self._pg = await asyncpg.connect(self.database.url, timeout=10)
            try:
                row = await self._pg.fetchrow(sql.format("$1"), inbox_id)
            except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
                self._pg = None
                raise
            return int(row[0]), int(row[1])

        def read() -> tuple[int, int]:
            conn = sqlite3.connect(self.data_dir / "switchboard.db", timeout=30)
            try:
                found = conn.execute(sql.format("?"), (inbox_id,)).fetchone()
                return int(found[0]), int(found[1])
            finally:
                conn.close()

        return await asyncio.to_thread(read)

    async def inbound_backlog(self) -> tuple[int, int]:
        """(entries not yet read by the worker group, entries read and not acknowledged)."""
        if self.redis is not None:
            if self._redis_client is None:
                self._redis_client = aioredis.Redis.from_url(self.redis.url)
            key = f"{REDIS_PREFIX}inbound"
            try:
                groups = await self._redis_client.xinfo_groups(key)
                info = await self._redis_client.xinfo_stream(key)
            except aioredis.ResponseError:
                return 0, 0
            except (aioredis.ConnectionError, OSError):
                # Redis restarted under our client: connect again next time.
                client, self._redis_client = self._redis_client, None
                await client.aclose()
                raise
            for group in groups:
                if _text(group["name"]) == INBOUND_GROUP:
                    caught_up = _text(group["last-delivered-id"]) == _text(
                        info["last-generated-id"]
                    )
                    unread = 0 if caught_up else max(1, int(group.get("lag") or 0))
                    return unread, int(group["pending"])
            return int(info["length"]), 0

        def read() -> tuple[int, int]:
            conn = sqlite3.connect(self.data_dir / "bus.db", timeout=30)
            try:
                row = conn.execute(
                    "SELECT s.last_seq - g.last_delivered FROM streams s JOIN groups g"
                    " ON g.stream = s.name WHERE s.name = 'inbound' AND g.name = ?",
                    (INBOUND_GROUP,),
                ).fetchone()
                (pending,) = conn.execute(
                    "SELECT count(*) FROM pending WHERE stream = 'inbound' AND grp = ?",
                    (INBOUND_GROUP,),
                ).fetchone()
                return (int(row[0]) if row else 0), int(pending)
            except sqlite3.OperationalError:  # tables not created yet
                return 0, 0
            finally:
                conn.close()

        return await asyncio.to_thread(read)

    async def durable_external_ids(self, inbox_id: int) -> set[str]:
        """Embedded shape, read from the files (e.g. while `serve` is dead): external ids of
        the inbox's messages that are stored or waiting on the bus's inbound stream."""
        if self.shape != "embedded":
            raise ValueError("only the embedded shape keeps its bus in a file")

        def read() -> set[str]:
            found: set[str] = set()
            conn = sqlite3.connect(self.data_dir / "switchboard.db", timeout=30)
            try:
                found.update(
                    row[0] for row in conn.execute(
                        "SELECT external_id FROM messages WHERE inbox_id = ? AND direction = 'in'",
                        (inbox_id,),
                    )
                )
            finally:
                conn.close()
            conn = sqlite3.connect(self.data_dir / "bus.db", timeout=30)
            try:
                for (payload,) in conn.execute(
                    "SELECT payload FROM entries WHERE stream = 'inbound'"
                ):
                    item = json.loads(payload)
                    if item.get("inbox_id") == inbox_id and item.get("external_id"):
                        found.add(item["external_id"])
            finally:
                conn.close()
            return found

        return await asyncio.to_thread(read)

    async def wait_stored(
        self, inbox_id: int, count: int, timeout: float = 60.0, *, settle: bool = True
    ) -> tuple[int, int]:
        """Wait until `count` inbound messages are stored (and, with settle, the bus is empty)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = await self.inbound_counts(inbox_id)
                done = found[0] >= count
                if done and settle:
                    done = await self.inbound_backlog() == (0, 0)
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                    aioredis.ConnectionError):
                found, done = (0, 0), False  # a server restarted under us: ask again
            if done:
                return found
            if time.monotonic() > deadline:
                backlog = await self.inbound_backlog()
                raise AssertionError(
                    f"{found[0]} of {count} messages stored after {timeout:.0f}s "
                    f"(bus backlog unread/pending: {backlog})\n{self.logs()}"
                )
            await asyncio.sleep(0.1)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --------------------------------------------------------------------------- HTTP clients


async def login(base: str, email: str, password: str, **client_args: Any) -> httpx.AsyncClient:
    """An httpx client logged in as the agent: session cookie plus the X-CSRF-Token header."""
    client = httpx.AsyncClient(base_url=base, timeout=client_args.pop("timeout", 15.0),
                               **client_args)
    try:
        response = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        if response.status_code != 200:
            raise AssertionError(f"login failed: {response.status_code} {response.text}")
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    except BaseException:
        await client.aclose()
        raise
    return client


@dataclass
class Setup:
    """What `bootstrap` made: an admin (also a member of the inbox) and an API inbox."""

    admin: httpx.AsyncClient
    admin_id: int
    inbox_id: int
    secret: str

    async def __aenter__(self) -> Setup:
        """Use as `async with await bootstrap(...) as setup`: the admin client is closed after."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the admin client."""
        await self.admin.aclose()

    @property
    def session_cookie(self) -> str:
        """The admin's session token, for websockets."""
        token = self.admin.cookies.get("switchboard_session")
        assert token, "not logged in"
        return token


async def bootstrap(stack: ProcessStack, base: str, *, secret: str = API_SECRET) -> Setup:
    """Create an admin (CLI), log in at `base`, create an API inbox and join it."""
    admin_id = await asyncio.to_thread(
        stack.createuser, ADMIN_EMAIL, ADMIN_PASSWORD, role="admin", name="Ada Admin"
    )
    admin = await login(base, ADMIN_EMAIL, ADMIN_PASSWORD)
    try:
        response = await admin.post(
            "/api/v1/inboxes",
            json={"name": "Process tests", "channel": "api", "settings": {"secret": secret}},
        )
        assert response.status_code in (200, 201), response.text
        inbox_id = int(response.json()["id"])
        response = await admin.put(
            f"/api/v1/inboxes/{inbox_id}/members", json={"agent_ids": [admin_id]}
        )
        assert response.status_code == 204, response.text
    except BaseException:
        await admin.aclose()
        raise
    return Setup(admin=admin, admin_id=admin_id, inbox_id=inbox_id, secret=secret)


# --------------------------------------------------------------------------- websockets


class EventCollector:
    """An agent websocket read in the background: every frame is kept, with arrival times.

    ``created[external_id]`` is the perf_counter() time the first message.created event of
    that message arrived; ``created_counts`` counts them (a redelivery may repeat one).
    """

    def __init__(self, conn: ClientConnection, ready: dict[str, Any]) -> None:
        self.conn = conn
        self.ready = ready
        self.frames = 0
        self.events: list[dict[str, Any]] = []
        self.keep_events = True
        self.created: dict[str, float] = {}
        self.created_counts: dict[str, int] = {}
        self.resyncs: list[dict[str, Any]] = []
        self.closed: BaseException | None = None
        self.changed = asyncio.Event()
        # Called with the external id when a message's first message.created arrives.
        self.on_created: Callable[[str], None] | None = None
        self._task = asyncio.create_task(self._read(), name="event-collector")

    @classmethod
    async def open(
        cls, ws_url: str, session_cookie: str, *, last_event_id: str | None = None,
        timeout: float = 10.0,
    ) -> EventCollector:
        """Connect with the session cookie and wait for the `ready` frame."""
        url = ws_url if last_event_id is None else f"{ws_url}?last_event_id={last_event_id}"
        conn = await connect(
            url,
            additional_headers={"Cookie": f"switchboard_session={session_cookie}"},
            open_timeout=timeout,
            max_queue=None,  # never stop reading: back-pressure would distort latencies
            ping_interval=None,
        )
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(conn.recv(), timeout))
                if frame.get("type") == "ready":
                    return cls(conn, frame)
        except BaseException:
            await conn.close()
            raise

    async def _read(self) -> None:
        try:
            async for raw in self.conn:
                now = time.perf_counter()
                frame = json.loads(raw)
                self.frames += 1
                kind = frame.get("type")
                if kind == "event":
                    event = frame["event"]
                    if self.keep_events:
                        self.events.append(event)
                    if event.get("type") == "message.created":
                        external_id = event["message"].get("external_id")
                        if external_id is not None:
                            count = self.created_counts.get(external_id, 0) + 1
                            self.created_counts[external_id] = count
                            if count == 1:
                                self.created[external_id] = now
                                if self.on_created is not None:
                                    self.on_created(external_id)
                elif kind == "resync":
                    self.resyncs.append(frame)
                self.changed.set()
        except Exception as exc:
            self.closed = exc
        else:
            self.closed = ConnectionError("websocket closed")
        self.changed.set()

    async def wait_created(self, external_ids: Sequence[str], timeout: float = 15.0) -> None:
        """Wait until a message.created event arrived for each external id."""
        deadline = time.monotonic() + timeout
        while any(i not in self.created for i in external_ids):
            if self.closed is not None:
                raise AssertionError(f"websocket ended: {self.closed!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [i for i in external_ids if i not in self.created]
                raise AssertionError(
                    f"no message.created for {len(missing)} message(s), e.g. {missing[:5]}; "
                    f"{self.frames} frames, resyncs: {self.resyncs}"
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))

    async def close(self) -> None:
        """Close the connection and stop reading."""
        await self.conn.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# --------------------------------------------------------------------------- inbound messages


def webhook_body(external_id: str, sender: str, text: str, *, name: str | None = None) -> bytes:
    """The JSON body of one api-channel inbound message."""
    message = {"id": external_id, "sender": {"id": sender, "name": name or sender}, "text": text}
    return json.dumps({"messages": [message]}).encode()


async def post_signed(
    client: httpx.AsyncClient, url: str, secret: str, body: bytes
) -> httpx.Response:
    """POST a body signed like the api channel's providers sign it."""
    return await client.post(url, content=body, headers=signed_headers(secret, body))


def sender_id(sender: int) -> str:
    """The sender id of sender number `sender`."""
    return f"sender-{sender:03d}"


def message_text(sender: int, seq: int) -> str:
    """The text of message `seq` of `sender`: it carries both numbers."""
    return f"{sender_id(sender)} #{seq}"


def parse_text(text: str) -> tuple[str, int]:
    """(sender id, seq) of a text made by message_text."""
    who, _, seq = text.partition(" #")
    return who, int(seq)


@dataclass
class Posted:
    """What happened to one message's POSTs."""

    external_id: str
    sender: int
    seq: int
    attempts: int = 0
    status: int | None = None  # status of the last answer
    sent_at: float | None = None  # perf_counter() when the accepted attempt was sent
    accepted_at: float | None = None  # perf_counter() when its 202 arrived
    errors: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """True once an attempt got 202."""
        return self.accepted_at is not None


RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


async def post_messages(
    bases: Sequence[str],
    inbox_id: int,
    secret: str,
    *,
    senders: int = 50,
    per_sender: int = 20,
    concurrency: int = 20,
    prefix: str = "m",
    retry_for: float = 30.0,
    on_accepted: Callable[[Posted], None] | None = None,
    client: httpx.AsyncClient | None = None,
) -> list[Posted]:
    """Post `senders` x `per_sender` signed messages, as providers do.

    Each sender's messages go one after the other (message n+1 only after n got its 202), so
    their acceptance order is their number; senders run concurrently with at most
    `concurrency` requests in flight. Sender i posts to ``bases[i % len(bases)]``. Like a
    provider, a connection error or a 5xx is retried (after 0.1-0.5 s) for up to `retry_for`
    seconds since the first attempt; other answers are final. Text: ``"sender-007 #12"``;
    external id: ``"<prefix>-007-12"``.
    """
    own = client is None
    http = client or httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, connect=2.0),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )
    slots = asyncio.Semaphore(concurrency)
    results: list[Posted] = []

    async def one(posted: Posted, url: str, body: bytes) -> None:
        give_up = time.monotonic() + retry_for
        delay = 0.1
        while True:
            posted.attempts += 1
            async with slots:
                started = time.perf_counter()
                try:
                    response = await post_signed(http, url, secret, body)
                except httpx.TransportError as exc:
                    response = None
                    posted.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            if response is not None:
                posted.status = response.status_code
                if response.status_code == 202:
                    posted.sent_at, posted.accepted_at = started, time.perf_counter()
                    if on_accepted is not None:
                        on_accepted(posted)
                    return
                posted.errors.append(f"{response.status_code}: {response.text[:200]}")
                if response.status_code not in RETRYABLE_STATUS:
                    return
            if time.monotonic() + delay > give_up:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    async def sender_task(sender: int) -> None:
        url = f"{bases[sender % len(bases)]}/webhooks/api/{inbox_id}"
        for seq in range(per_sender):
            posted = Posted(f"{prefix}-{sender:03d}-{seq}", sender, seq)
            results.append(posted)
            body = webhook_body(posted.external_id, sender_id(sender), message_text(sender, seq))
            await one(posted, url, body)
            if not posted.accepted:
                return  # as a provider: never post a later message before an earlier one

    try:
        await asyncio.gather(*(sender_task(s) for s in range(senders)))
    finally:
        if own:
            await http.aclose()
    return results


# --------------------------------------------------------------------------- reading back


async def all_conversations(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every conversation the client's agent sees, through the paginated API."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/api/v1/conversations", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return found


async def all_messages(client: httpx.AsyncClient, conversation_id: int) -> list[dict[str, Any]]:
    """Every message of a conversation, oldest first, through the paginated API."""
    pages: list[list[dict[str, Any]]] = []
    before: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if before:
            params["before"] = before
        response = await client.get(
            f"/api/v1/conversations/{conversation_id}/messages", params=params
        )
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["items"])
        before = page["older_cursor"]
        if not before:
            break
    return [m for page in reversed(pages) for m in page]


async def check_threads(
    client: httpx.AsyncClient, *, senders: int, per_sender: int
) -> list[str]:
    """Problems with the stored conversations: one per sender, holding exactly its messages
    numbered 0..per_sender-1 in order. An empty list means all is well."""
    problems: list[str] = []
    conversations = await all_conversations(client)
    if len(conversations) != senders:
        problems.append(f"{len(conversations)} conversations, expected {senders}")
    seen: dict[str, int] = {}
    for conversation in conversations:
        messages = await all_messages(client, conversation["id"])
        inbound = [m for m in messages if m["direction"] == "in"]
        owners = {parse_text(m["text"])[0] for m in inbound}
        if len(owners) != 1:
            problems.append(f"conversation {conversation['id']} mixes senders {sorted(owners)}")
            continue
        (owner,) = owners
        if owner in seen:
            problems.append(
                f"{owner} has two conversations: {seen[owner]} and {conversation['id']}"
            )
        seen[owner] = conversation["id"]
        numbers = [parse_text(m["text"])[1] for m in inbound]
        if numbers != list(range(per_sender)):
            problems.append(f"{owner} (conversation {conversation['id']}): {numbers}")
    return problems


Stack = ProcessStack  # the short name

__all__ = [
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "API_SECRET",
    "EventCollector",
    "Posted",
    "Proc",
    "ProcessFailed",
    "ProcessStack",
    "Setup",
    "Stack",
    "all_conversations",
    "all_messages",
    "bootstrap",
    "check_threads",
    "login",
    "post_messages",
    "post_signed",
    "webhook_body",
]
