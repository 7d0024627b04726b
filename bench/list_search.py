"""The conversation list and search at scale: p50 / p99 on a generated PostgreSQL database.

Generates (bench/list_search_data.py) 1,000,000 conversations and 10,000,000 messages by
default in a dedicated database, then times the real query functions the API calls
(inbox.queries.list_conversations, inbox.search.search and search_contacts), each in its
own read session from the app's pool as a request would, for agents who see several
inboxes and for an admin. Run by hand from the repository root, never in CI:

    .venv/bin/python bench/list_search.py                 # generate, measure, drop
    .venv/bin/python bench/list_search.py --keep          # keep the database for next time
    .venv/bin/python bench/list_search.py --keep --explain  # plans of one run per scenario

Needs PostgreSQL on 127.0.0.1:5432 as user `postgres` (or SWITCHBOARD_TEST_PG_ADMIN_URL),
and about 1 KB of disk per message (checked first). Generating the default size takes about
an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # type: ignore[import-untyped]  # noqa: E402
import httpx  # noqa: E402
from sqlalchemy import event, text  # noqa: E402
from sqlmodel.ext.asyncio.session import AsyncSession  # noqa: E402

from bench.list_search_data import Size, generate  # noqa: E402
from hub.app import settle_after_start  # noqa: E402
from inbox import queries, search  # noqa: E402
from inbox.agents import Principal, hash_password, visible_inbox_ids  # noqa: E402
from inbox.db import Database  # noqa: E402
from inbox.migrate import upgrade  # noqa: E402
from inbox.models import Agent  # noqa: E402

ADMIN_URL = os.environ.get("SWITCHBOARD_TEST_PG_ADMIN_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "bench password"  # every generated agent's
BYTES_PER_MESSAGE = 1000  # table, tsvector, GIN and b-tree indexes, with room to spare


def say(line: str) -> None:
    """Print a progress line at once."""
    print(line, flush=True)


def _url(name: str, driver: str = "postgresql") -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(scheme=driver, path=f"/{name}"))


Query = Callable[[AsyncSession, Principal, int], Awaitable[int]]
# The same over HTTP: the path and query parameters of the request(s) a browser makes.
Request = Callable[[Principal, int], list[tuple[str, dict[str, str]]]]


@dataclass
class Scenario:
    """One thing an agent does, run many times with varying agents and parameters."""

    name: str
    run: Query | None  # None: measured over HTTP only
    request: Request
    agents: str = "agents"  # "agents" (several inboxes each) or "admin"


def _list(
    name: str, statuses: tuple[str, ...] = ("open",), assignee: str | None = None,
    one_inbox: bool = False, deep: dict[int, str | None] | None = None, agents: str = "agents",
) -> Scenario:
    def filters(principal: Principal, i: int) -> queries.ConversationFilter:
        ids = sorted(principal.inbox_ids)
        return queries.ConversationFilter(inbox_id=ids[i % len(ids)] if one_inbox else None,
                                          statuses=statuses, assignee=assignee)

    def cursor(principal: Principal) -> str | None:
        return deep[principal.agent_id] if deep is not None else None

    async def run(session: AsyncSession, principal: Principal, i: int) -> int:
        items, _ = await queries.list_conversations(
            session, principal, filters(principal, i), cursor=cursor(principal), limit=25)
        return len(items)

    def request(principal: Principal, i: int) -> list[tuple[str, dict[str, str]]]:
        f = filters(principal, i)
        params = {"status": ",".join(statuses), "assignee": assignee or "",
                  "inbox_id": str(f.inbox_id or ""), "cursor": cursor(principal) or ""}
        return [("/api/v1/conversations", {k: v for k, v in params.items() if v})]

    return Scenario(name, run, request, agents)


def _search(name: str, words: list[str], agents: str = "agents", **filters: Any) -> Scenario:
    async def run(session: AsyncSession, principal: Principal, i: int) -> int:
        items, _ = await search.search(session, principal, words[i % len(words)],
                                       search.SearchFilter(**filters), limit=25)
        return len(items)

    def request(principal: Principal, i: int) -> list[tuple[str, dict[str, str]]]:
        params = {"q": words[i % len(words)]}
        if filters.get("statuses"):
            params["status"] = ",".join(filters["statuses"])
        if filters.get("assignee"):
            params["assignee"] = filters["assignee"]
        return [("/api/v1/search", params)]

    return Scenario(name, run, request, agents)


def _contacts(name: str, words: list[str]) -> Scenario:
    async def run(session: AsyncSession, principal: Principal, i: int) -> int:
        items, _ = await search.search_contacts(session, principal,
                                                words[i % len(words)] or None, limit=25)
        return len(items)

    def request(principal: Principal, i: int) -> list[tuple[str, dict[str, str]]]:
        word = words[i % len(words)]
        return [("/api/v1/contacts", {"q": word} if word else {})]

    return Scenario(name, run, request)


def _open(threads: dict[int, list[int]]) -> Scenario:
    """Open a conversation as the inbox does: the conversation and its newest 50 messages."""
    def request(principal: Principal, i: int) -> list[tuple[str, dict[str, str]]]:
        ids = threads[principal.agent_id]
        conversation = ids[i % len(ids)]
        return [(f"/api/v1/conversations/{conversation}", {}),
                (f"/api/v1/conversations/{conversation}/messages", {})]

    return Scenario("open a conversation (thread of 50 messages)", None, request)


async def _deep_cursors(db: Database, principals: list[Principal], depth: int
                        ) -> dict[int, str | None]:
    """For each agent, the cursor `depth` rows into their open-and-closed list (half way
    down a shorter list; None, the first page, for an agent whose inboxes are empty)."""
    out: dict[int, str | None] = {}
    async with db.read() as session:
        conn = await session.connection()
        for p in principals:
            ids = sorted(p.inbox_ids)
            count = (await conn.execute(text(
                "SELECT count(*) FROM conversations WHERE inbox_id = ANY(:ids)"),
                {"ids": ids})).scalar_one()
            if not count:
                out[p.agent_id] = None
                continue
            row = (await conn.execute(text(
                "SELECT last_activity_at, id FROM conversations WHERE inbox_id = ANY(:ids) "
                "ORDER BY last_activity_at DESC, id DESC OFFSET :depth LIMIT 1"),
                {"ids": ids, "depth": min(depth, count // 2)})).one()
            out[p.agent_id] = queries.encode_cursor(row[0], row[1])
    return out


async def _rare_codes(db: Database) -> list[str]:
    """Up to 20 reference codes spread over the messages (any 20 in a small data set)."""
    async with db.read() as session:
        conn = await session.connection()
        for spread in ("id % 997 = 0 AND ", ""):
            rows = await conn.execute(text(
                "SELECT substring(text from 'ref (r[0-9]+)') FROM messages "
                f"WHERE {spread}text LIKE '%ref r%' LIMIT 20"))
            codes = [r[0] for r in rows if r[0]]
            if codes:
                return codes
        return []


def scenarios(deep: dict[int, str | None], rare: list[str],
              threads: dict[int, list[int]] | None = None) -> list[Scenario]:
    """What is measured."""
    common = ["order", "payment", "delivery", "account", "refund"]
    two = ["refund payment", "tracking number", "password reset", "damaged package"]
    three = ["refund payment card", "tracking number order", "password reset link",
             "damaged package replacement"]
    phrase = ['"my order"', '"the payment"', '"tracking number"', '"please help"']
    prefix = ["deliv", "passw", "subscr", "warra"]
    typing = ["refund paym", "tracking numb", "password res", "damaged pack"]
    names = ["Lopez", "ada", "priya tanaka", "gmail"]
    return [
        _list("list: default view (open, all my inboxes)"),
        _list("list: all statuses", statuses=()),
        _list("list: open, assigned to me", assignee="me"),
        _list("list: open, unassigned", assignee="none"),
        _list("list: open, one inbox", one_inbox=True),
        _list("list: resolved", statuses=("resolved",)),
        _list("list: open or pending", statuses=("open", "pending")),
        _list("list: deep cursor (row 20,000)", statuses=(), deep=deep),
        _list("list: admin default view (50 inboxes)", agents="admin"),
        _search("search: common word", common),
        _search("search: two words", two),
        _search("search: three words", three),
        _search("search: a phrase", phrase),
        _search("search: prefix", prefix),
        _search("search: two words, the second being typed", typing),
        _search("search: rare code (~10 messages)", rare),
        _search("search: common word, open", common, statuses=("open",)),
        _search("search: common word, assigned to me", common, assignee="me"),
        _search("search: rare code, resolved", rare, statuses=("resolved",)),
        _search("search: common word, admin", common, agents="admin"),
        _search("search: rare code, admin", rare, agents="admin"),
        _contacts("contacts: name or email", names),
        _contacts("contacts: list, no words", [""]),
        *([_open(threads)] if threads else []),
    ]


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


async def _explain(db: Database, scenario: Scenario, principal: Principal) -> None:
    """EXPLAIN ANALYZE of every statement one run of the scenario sends."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        captured.append((statement, params))

    assert scenario.run is not None
    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.read() as session:
            await scenario.run(session, principal, 0)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    async with db.read() as session:
        conn = await session.connection()
        for statement, params in captured:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            plan = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement,
                                              params)
            say("    " + "\n    ".join(r[0] for r in plan))


class SqlClock:
    """Time spent waiting for the database, summed over the statements of a run."""

    def __init__(self, db: Database) -> None:
        self.total = 0.0
        self._started = 0.0
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(db.engine.sync_engine, "after_cursor_execute", self._after)

    def _before(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, *_: Any) -> None:
        self.total += time.perf_counter() - self._started


def _busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the machine so far, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


async def _principals(db: Database) -> dict[str, list[Principal]]:
    """Up to eight agents who see at least five inboxes each, and the admin."""
    async with db.read() as session:
        conn = await session.connection()
        agents = list(await conn.execute(
            # Agents first; leads when a small database has no plain agent.
            text("SELECT a.id FROM agents a JOIN inbox_members m ON m.agent_id = a.id "
                 "WHERE a.role != 'admin' GROUP BY a.id, a.role "
                 "HAVING count(*) >= least(5, (SELECT count(*) FROM inboxes)) "
                 "ORDER BY a.role = 'agent' DESC, a.id LIMIT 8")))
        principals: dict[str, list[Principal]] = {"agents": [], "admin": []}
        for (agent_id,) in agents:
            agent = await session.get_one(Agent, agent_id)
            principals["agents"].append(Principal(agent_id, agent.role,
                                                  await visible_inbox_ids(session, agent), ""))
        admin = await session.get_one(Agent, 1)
        principals["admin"].append(Principal(1, "admin",
                                             await visible_inbox_ids(session, admin), ""))
    say(f"agents measured: {len(principals['agents'])} with "
        f"{sorted(len(p.inbox_ids) for p in principals['agents'])} inboxes each, and an admin")
    return principals


async def _threads(db: Database, principals: list[Principal], count: int = 20
                   ) -> dict[int, list[int]]:
    """For each agent, `count` conversations of theirs with 50 messages at least.

    The generated conversations have 5-15 messages; the newest resolved ones of each agent's
    inboxes are topped up to 50 (copies of their own messages, spread over the hour before
    their last activity), once: a later run finds them full.
    """
    out: dict[int, list[int]] = {}
    async with db.write() as session:
        conn = await session.connection()
        for p in principals:
            ids = [r[0] for r in await conn.execute(text(
                "SELECT id FROM conversations WHERE inbox_id = ANY(:ids) AND status = 'resolved' "
                "ORDER BY id DESC LIMIT :count"), {"ids": sorted(p.inbox_ids), "count": count})]
            await conn.execute(text("""
                INSERT INTO messages (conversation_id, inbox_id, direction, kind, text,
                                      contact_id, agent_id, status, attachments, meta,
                                      accepted_at, created_at)
                SELECT c.id, c.inbox_id, m.direction, m.kind, m.text, m.contact_id, m.agent_id,
                       m.status, '[]', '{}',
                       c.last_activity_at - interval '1 hour' * k / 50.0,
                       c.last_activity_at - interval '1 hour' * k / 50.0
                FROM conversations c
                CROSS JOIN LATERAL (SELECT count(*) AS n FROM messages
                                    WHERE conversation_id = c.id) have
                CROSS JOIN LATERAL generate_series(1, greatest(0, 50 - have.n)) k
                CROSS JOIN LATERAL (SELECT * FROM messages WHERE conversation_id = c.id
                                    AND kind = 'message' LIMIT 1) m
                WHERE c.id = ANY(:ids)"""), {"ids": ids})
            out[p.agent_id] = ids
    return out


def _figures(name: str, times: list[float], sql: list[float] | None, rows: int,
             busy: tuple[float, float]) -> dict[str, Any]:
    after = _busy()
    figures = {"scenario": name, "runs": len(times),
               "p50_ms": _percentile(times, 50), "p99_ms": _percentile(times, 99),
               "max_ms": max(times), "mean_ms": statistics.fmean(times),
               "rows_per_page": rows / len(times),
               "machine_busy": (after[0] - busy[0]) / (after[1] - busy[1])}
    line = (f"{name:<46} p50 {figures['p50_ms']:6.1f}  p99 {figures['p99_ms']:6.1f}  "
            f"max {figures['max_ms']:6.1f} ms | ")
    if sql is not None:
        figures.update(sql_p50_ms=_percentile(sql, 50), sql_p99_ms=_percentile(sql, 99))
        line += (f"SQL p50 {figures['sql_p50_ms']:6.1f}  p99 {figures['sql_p99_ms']:6.1f} ms | ")
    say(line + f"{figures['rows_per_page']:4.1f} rows | machine {figures['machine_busy']:.0%} busy")
    return figures


async def measure(db: Database, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run every scenario's functions in this process and return their figures."""
    principals = await _principals(db)
    deep = await _deep_cursors(db, principals["agents"] + principals["admin"], 20_000)
    results = []
    clock = SqlClock(db)
    rare = await _rare_codes(db)
    settle_after_start()  # as a web process does once started
    for scenario in scenarios(deep, rare):
        if (args.only and args.only not in scenario.name) or scenario.run is None:
            continue
        if "rare code" in scenario.name and not rare:
            say(f"{scenario.name}: skipped, no message has a reference code at this size")
            continue
        who = principals[scenario.agents]
        times: list[float] = []
        sql: list[float] = []
        rows = 0
        for i in range(-3, args.runs):  # three unmeasured warm-up runs
            principal = who[i % len(who)]
            if i == 0:
                busy = _busy()
            clock.total = 0.0
            started = time.perf_counter()
            async with db.read() as session:
                found = await scenario.run(session, principal, i)
            if i >= 0:
                times.append((time.perf_counter() - started) * 1000)
                sql.append(clock.total * 1000)
                rows += found
        results.append(_figures(scenario.name, times, sql, rows, busy))
        if args.explain:
            await _explain(db, scenario, who[0])
    return results


class _Existing:
    """The bench database, for a ProcessStack that must neither create nor drop it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def drop(self) -> None:
        """Keep it."""


class _FullCollections:
    """How often, and for how long, this process's own full garbage collections ran."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._started) * 1000)

    def report(self) -> None:
        gc.callbacks.remove(self._on_gc)
        longest = max(self.pauses, default=0.0)
        say(f"client full garbage collections while measuring: {len(self.pauses)}, "
            f"longest {longest:.1f} ms")


async def measure_http(db: Database, name: str, args: argparse.Namespace
                       ) -> list[dict[str, Any]]:
    """The same scenarios over HTTP, as a browser asks: one `switchboard web` process on the
    bench database (with its own Redis), each agent logged in, requests one at a time."""
    from tests.processes import ProcessStack, login
    from tests.services import RedisServer

    principals = await _principals(db)
    deep = await _deep_cursors(db, principals["agents"] + principals["admin"], 20_000)
    rare = await _rare_codes(db)
    threads = await _threads(db, principals["agents"])
    root = Path(tempfile.mkdtemp(prefix="sb-bench-http-"))
    stack = ProcessStack(root, "production", log_level="warning")
    clients: dict[int, httpx.AsyncClient] = {}
    try:
        for folder in (stack.data_dir, stack.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        stack.redis = await asyncio.to_thread(RedisServer.start, root / "redis")
        stack.database = _Existing(_url(name))  # type: ignore[assignment]
        web = stack.web("web-1")
        await stack.wait_ready(timeout=60)
        say(f"web process pid {web.pid} at {web.base_url}")
        for p in principals["agents"] + principals["admin"]:
            clients[p.agent_id] = await login(web.base_url, f"agent{p.agent_id}@bench.example",
                                              PASSWORD, timeout=30)
        results = []
        # The client's own full collections would count as the server's time: freeze what
        # it built so far, as the web process does, and report any that still happen.
        settle_after_start()
        pauses = _FullCollections()
        for scenario in scenarios(deep, rare, threads):
            if args.only and args.only not in scenario.name:
                continue
            if "rare code" in scenario.name and not rare:
                continue
            who = principals[scenario.agents]
            times: list[float] = []
            rows = 0
            for i in range(-3, args.runs):
                principal = who[i % len(who)]
                client = clients[principal.agent_id]
                if i == 0:
                    busy = _busy()
                started = time.perf_counter()
                responses = await asyncio.gather(*(
                    client.get(path, params=params)
                    for path, params in scenario.request(principal, i)))
                elapsed = (time.perf_counter() - started) * 1000
                for response in responses:
                    if response.status_code != 200:
                        raise RuntimeError(f"{scenario.name}: {response.status_code} "
                                           f"{response.text[:300]}")
                if i >= 0:
                    times.append(elapsed)
                    rows += len(responses[-1].json().get("items", []))
            results.append(_figures("HTTP " + scenario.name, times, None, rows, busy))
        pauses.report()
        return results
    finally:
        for client in clients.values():
            await client.aclose()
        await stack.close()
        shutil.rmtree(root, ignore_errors=True)


async def _generated_size(name: str) -> str | None:
    """The size a complete earlier generation wrote on the database, if there is one."""
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        return await admin.fetchval(  # type: ignore[no-any-return]
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            name)
    finally:
        await admin.close()


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> int:
    """Generate (or reuse), measure, report, drop (unless --keep)."""
    size = Size(conversations=args.conversations, messages_per_conversation=args.messages_per,
                inboxes=args.inboxes, agents=args.agents,
                contacts=args.contacts or max(1, args.conversations * 3 // 10))
    name = args.db_name
    started = time.monotonic()
    if not (args.keep and await _generated_size(name) == str(size)):
        need = size.conversations * size.messages_per_conversation * BYTES_PER_MESSAGE
        free = shutil.disk_usage("/var/lib/postgresql" if Path("/var/lib/postgresql").exists()
                                 else "/").free
        say(f"disk: {free / 1e9:.0f} GB free, about {need / 1e9:.0f} GB needed")
        if free < need * 1.5:
            say("not enough free disk space; use a smaller --conversations")
            return 2
        await _admin(f'DROP DATABASE IF EXISTS "{name}"')
        await _admin(f'CREATE DATABASE "{name}"')
        await asyncio.to_thread(upgrade, _url(name, "postgresql+asyncpg"))
        say(f"generating {size} in database {name}")
        conn = await asyncpg.connect(_url(name), command_timeout=None)
        try:
            await generate(conn, size, hash_password(PASSWORD), say)
            await conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{size}'")
        finally:
            await conn.close()
        say(f"generated in {time.monotonic() - started:.0f} s")
    else:
        say(f"reusing database {name}: {size}")
    db = Database(_url(name, "postgresql+asyncpg"))
    try:
        results = []
        if not (args.generate_only or args.http_only):
            results += await measure(db, args)
        if (args.http or args.http_only) and not args.generate_only:
            results += await measure_http(db, name, args)
    finally:
        await db.close()
    if args.json:
        Path(args.json).write_text(json.dumps({
            "size": size.__dict__, "machine": platform.platform(), "cpus": os.cpu_count(),
            "results": results}, indent=2))
    if not args.keep:
        await _admin(f'DROP DATABASE "{name}"')
        say(f"dropped database {name}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--messages-per", type=int, default=10,
                        help="messages per conversation on average (>= 5)")
    parser.add_argument("--inboxes", type=int, default=50)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--contacts", type=int, default=0, help="default: 30%% of conversations")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per scenario")
    parser.add_argument("--db-name", default="sbbench_list_search")
    parser.add_argument("--keep", action="store_true",
                        help="keep the database, and reuse it if it has the asked size")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--http", action="store_true",
                        help="also measure every scenario end to end over HTTP")
    parser.add_argument("--http-only", action="store_true",
                        help="measure over HTTP only, not the functions in this process")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN ANALYZE of one run of each scenario")
    parser.add_argument("--only", help="run only scenarios whose name contains this")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    if args.messages_per < 5:
        parser.error("--messages-per must be at least 5")
    return args


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
