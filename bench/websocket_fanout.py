"""Websockets: what idle agent connections cost a web process, and fanning one event out.

Starts Switchboard like bench/inbound.py (tests/processes.py's ProcessStack: `--shape
embedded`, one `serve` process on SQLite and the embedded bus; `--shape production`, one
`web` process and one worker on a fresh PostgreSQL database and a private Redis), makes an
admin who is a member of one API inbox, and opens agent websockets (the admin's session,
`/api/v1/ws`, compression offered as browsers offer it unless `--no-compression`) to the
web process from `--clients` (2) client processes (this script with `--client`), in steps
up to each of `--connections` (1000 10000).

At each step:
- memory: the web process's resident set (VmRSS, /proc) with no websocket open (after one
  warm-up connection came and went) and with the step's connections open and idle for
  `--settle` (5) seconds: (difference) / connections = KiB per connection;
- fan-out: `--events` (10) inbound messages (signed webhooks, one every `--gap` (1.5) s),
  each a message.created event for every connection (plus the conversation's own events):
  the time from a webhook's POST to the moment the last connection had its message.created
  (median and max over the messages; the clients take the arrival time from the same
  monotonic clock), and the web process's CPU (utime + stime, /proc) over the fan-out
  minus what it used idle over as long just before, per message and per connection.

The clients share the machine's CPUs with the server: on a small machine the arrival times
include the clients' own reading. Run from the repository root:

    .venv/bin/python bench/websocket_fanout.py
    .venv/bin/python bench/websocket_fanout.py --shape production --connections 1000 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from tests.processes import ProcessStack, bootstrap, post_signed, webhook_body  # noqa: E402

MAX_CONNECTIONS = 50_000


def say(line: str) -> None:
    print(line, flush=True)


def raise_file_limit() -> int:
    """As many open files as this process may have (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the client processes ----------------------------------------------------------------


async def client_main(args: argparse.Namespace) -> None:
    """Open `--count` sockets, say "connected N", then read everything; on the line
    "report" print the arrival (monotonic) of each message's message.created on each
    socket, as {external_id: [times]}; on "close", close them all and say "closed"."""
    arrivals: dict[str, list[float]] = {}
    sockets: list[ClientConnection] = []
    gate = asyncio.Semaphore(100)

    frames = [0]

    async def read(conn: ClientConnection) -> None:
        async for raw in conn:
            frames[0] += 1
            if b"message.created" not in (raw if isinstance(raw, bytes) else raw.encode()):
                continue
            now = time.monotonic()
            frame = json.loads(raw)
            event = frame.get("event") or {}
            if event.get("type") == "message.created":
                external = event["message"].get("external_id")
                if external:
                    arrivals.setdefault(external, []).append(now)

    async def one() -> None:
        async with gate:
            conn = await connect(args.url, additional_headers={"Cookie": args.cookie},
                                 compression=None if args.no_compression else "deflate",
                                 ping_interval=None, max_queue=None, open_timeout=60)
            while json.loads(await conn.recv()).get("type") != "ready":
                pass
            sockets.append(conn)
            tasks.append(asyncio.create_task(read(conn)))

    tasks: list[asyncio.Task[None]] = []
    await asyncio.gather(*(one() for _ in range(args.count)))
    print(f"connected {len(sockets)}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "report":
            print(json.dumps({"arrivals": arrivals, "frames": frames[0]}), flush=True)
            arrivals, frames[0] = {}, 0
        elif line in ("close", ""):
            await asyncio.gather(*(conn.close() for conn in sockets), return_exceptions=True)
            for task in tasks:
                task.cancel()
            print("closed", flush=True)
            return


class Clients:
    """The client processes of one step."""

    def __init__(self, args: argparse.Namespace, url: str, cookie: str, total: int) -> None:
        per = [total // args.clients + (1 if i < total % args.clients else 0)
               for i in range(args.clients)]
        self.procs = [subprocess.Popen(
            [sys.executable, __file__, "--client", "--url", url, "--cookie", cookie,
             "--count", str(n), *(["--no-compression"] if args.no_compression else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n in per if n]

    def _ask(self, line: str | None) -> list[str]:
        if line is not None:
            for proc in self.procs:
                assert proc.stdin is not None
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
        answers = []
        for proc in self.procs:
            assert proc.stdout is not None
            answer = proc.stdout.readline()
            if not answer:
                raise RuntimeError("a client process ended early")
            answers.append(answer.strip())
        return answers

    async def connected(self) -> int:
        answers = await asyncio.to_thread(self._ask, None)
        return sum(int(a.split()[1]) for a in answers)

    async def arrivals(self) -> tuple[dict[str, list[float]], int]:
        """When each message's message.created reached each socket; all frames read."""
        merged: dict[str, list[float]] = {}
        frames = 0
        for answer in await asyncio.to_thread(self._ask, "report"):
            report = json.loads(answer)
            frames += report["frames"]
            for external, times in report["arrivals"].items():
                merged.setdefault(external, []).extend(times)
        return merged, frames

    async def close(self) -> None:
        await asyncio.to_thread(self._ask, "close")
        for proc in self.procs:
            proc.wait(timeout=60)


# -- the steps -----------------------------------------------------------------------------


async def step(args: argparse.Namespace, stack: Any, web: Any, setup: Any, total: int,
               baseline: int) -> dict[str, Any]:
    pid = web.pid
    began = time.monotonic()
    clients = Clients(args, web.ws_url, f"switchboard_session={setup.session_cookie}", total)
    try:
        opened = await clients.connected()
        connect_s = time.monotonic() - began
        await asyncio.sleep(args.settle)
        rss = rss_kib(pid)
        idle0 = cpu_seconds(pid)
        await asyncio.sleep(args.events * args.gap)
        idle_cpu = cpu_seconds(pid) - idle0
        sent: dict[str, float] = {}
        cpu0 = cpu_seconds(pid)
        async with httpx.AsyncClient(timeout=30) as http:
            for n in range(args.events):
                external = f"fan-{total}-{n}"
                body = webhook_body(external, f"visitor-{n}", f"fan-out {n}")
                sent[external] = time.monotonic()
                response = await post_signed(
                    http, f"{web.base_url}/webhooks/api/{setup.inbox_id}", setup.secret, body)
                if response.status_code != 202:
                    raise RuntimeError(f"webhook refused: {response.status_code}")
                await asyncio.sleep(args.gap)
        busy_cpu = cpu_seconds(pid) - cpu0
        arrivals, frames = await clients.arrivals()
        spans, complete = [], 0
        for external, at in sent.items():
            times = arrivals.get(external, [])
            if len(times) >= opened:
                complete += 1
                spans.append((max(times) - at) * 1000)
        fan_cpu = max(0.0, busy_cpu - idle_cpu)
        result = {
            "connections": opened, "connect_seconds": connect_s,
            "rss_kib": rss, "kib_per_connection": (rss - baseline) / max(1, opened),
            "messages": args.events, "complete_messages": complete,
            "frames_per_message_per_connection": frames / args.events / max(1, opened),
            "last_arrival_ms": {"median": statistics.median(spans) if spans else None,
                                "max": max(spans) if spans else None},
            "cpu_ms_per_message": fan_cpu / args.events * 1000,
            "cpu_us_per_message_per_connection": fan_cpu / args.events / max(1, opened) * 1e6,
            "idle_cpu_seconds": idle_cpu,
        }
    finally:
        await clients.close()
    return result


async def main(args: argparse.Namespace) -> int:
    limit = raise_file_limit()
    need = max(args.connections) + 1000
    if limit < need:
        say(f"open files limited to {limit}: {need} needed; raise `ulimit -n`")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="sb-bench-ws-"))
    stack = ProcessStack(workdir, args.shape, log_level="warning")
    try:
        await stack.start()
        if args.shape == "production":
            web = stack.web("web-1")
            stack.worker("worker-1")
        else:
            web = stack.serve("serve")
        await stack.wait_ready(timeout=60)
        setup = await bootstrap(stack, web.base_url)
        async with setup:
            # Warm-up: one connection and one message, so imports and caches are paid.
            warm = Clients(args, web.ws_url, f"switchboard_session={setup.session_cookie}", 1)
            await warm.connected()
            async with httpx.AsyncClient(timeout=30) as http:
                await post_signed(http, f"{web.base_url}/webhooks/api/{setup.inbox_id}",
                                  setup.secret, webhook_body("warm", "visitor-warm", "hi"))
            await asyncio.sleep(2)
            await warm.close()
            await asyncio.sleep(2)
            assert web.pid is not None
            baseline = rss_kib(web.pid)
            say(f"{args.shape}: web process pid {web.pid}, {baseline / 1024:.1f} MiB resident "
                f"with no websocket; compression {'off' if args.no_compression else 'offered'}")
            results = []
            for total in args.connections:
                result = await step(args, stack, web, setup, total, baseline)
                results.append(result)
                arrival = result["last_arrival_ms"]
                say(f"  {result['connections']:>6,} connections (opened in "
                    f"{result['connect_seconds']:.0f} s): {result['rss_kib'] / 1024:7.1f} MiB, "
                    f"{result['kib_per_connection']:5.1f} KiB each; fan-out of one message: "
                    f"last socket after {arrival['median'] or 0:.0f} ms median, "
                    f"{arrival['max'] or 0:.0f} max ({result['complete_messages']}/"
                    f"{result['messages']} reached all); web CPU "
                    f"{result['cpu_ms_per_message']:.1f} ms a message, "
                    f"{result['cpu_us_per_message_per_connection']:.1f} µs per connection "
                    f"({result['frames_per_message_per_connection']:.1f} frames a message "
                    "on each)")
                await asyncio.sleep(3)  # closed sockets let go before the next step
        if args.json:
            Path(args.json).write_text(json.dumps({
                "shape": args.shape, "baseline_rss_kib": baseline, "steps": results,
                "compression": not args.no_compression, "clients": args.clients,
                "cpus": os.cpu_count()}, indent=2) + "\n")
        return 0
    finally:
        await stack.close()
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("embedded", "production"), default="embedded")
    parser.add_argument("--connections", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--events", type=int, default=10, help="messages fanned out per step")
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between messages")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--json", type=Path)
    # a client process (started by the benchmark itself)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--cookie", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.connections = [max(1, min(n, MAX_CONNECTIONS)) for n in args.connections]
    args.clients = max(1, min(args.clients, 16))
    args.events = max(1, min(args.events, 1000))
    return args


if __name__ == "__main__":
    parsed = parse_args()
    if parsed.client:
        raise_file_limit()
        asyncio.run(client_main(parsed))
    else:
        raise SystemExit(asyncio.run(main(parsed)))
