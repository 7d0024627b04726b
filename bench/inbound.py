"""Inbound benchmark: signed webhooks in, message.created frames out on an agent websocket.

Starts its own stack like tests/test_processes.py does (a private Redis and a fresh
PostgreSQL database for --shape production; a temp data dir with SQLite and the embedded bus
for --shape embedded), logs an agent into a websocket, drives signed inbound messages at a
set rate, and reports:

- offered rate (what was scheduled, and what was actually sent),
- accepted throughput (202 answers per second),
- stored throughput (message.created frames per second on the agent websocket, checked
  against a SQL count),
- latency from the moment a POST was sent to the moment its message.created frame arrived
  on the websocket: p50 / p90 / p99 / max (plus the POST's own 202 latency).

Open loop (default): sends are scheduled at --rate whatever happens to earlier ones, with at
most --in-flight requests outstanding (a send that finds no free slot waits and is counted
as "delayed by the in-flight cap"). --max: closed loop end to end, --in-flight messages
kept "in the system" (sent, their message.created not yet seen), which finds the sustained
throughput. --max-accept: closed loop on the 202 only, which finds how fast webhooks are
accepted (the bus absorbs the backlog the workers cannot keep up with).

Bounded: at most --seconds of sending (<= 600), at most 500,000 messages, at most --drain
seconds (<= 300) waiting for the backlog; only 127.0.0.1 is used. Run from the repository
root with the project's virtualenv:

    .venv/bin/python bench/inbound.py --shape production --rate 500 --seconds 20
    .venv/bin/python bench/inbound.py --shape production --max --seconds 20
    .venv/bin/python bench/inbound.py --shape embedded --rate 200 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from channels.api import signed_headers  # noqa: E402
from tests.processes import (  # noqa: E402
    EventCollector,
    ProcessStack,
    bootstrap,
    post_signed,
    webhook_body,
)

MAX_SECONDS = 600
MAX_MESSAGES = 500_000
MAX_DRAIN = 300
STALL_SECONDS = 30.0


@dataclass
class Sample:
    """One message of the run."""

    external_id: str
    scheduled: float  # perf_counter() it was due (open loop) or started (max)
    sent: float = math.nan  # perf_counter() the POST was handed to the client
    answered: float = math.nan  # perf_counter() its answer arrived
    status: int | None = None
    error: str | None = None


@dataclass
class Run:
    """Everything measured."""

    args: argparse.Namespace
    samples: list[Sample] = field(default_factory=list)
    start: float = 0.0
    send_end: float = 0.0
    delayed: int = 0
    stored_sql: int = 0
    drained: bool = False
    truncated: bool = False
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used during the run
    machine: tuple[float, float] = (0.0, 0.0)  # (busy, total) CPU seconds of the machine
    setup_seconds: float = 0.0


class RawClient:
    """A lean keep-alive HTTP/1.1 client for POSTs to 127.0.0.1: the load generator shares
    the machine with the stack, so it should spend as little CPU as it can (httpx costs about
    ten times more per request). Answers must carry Content-Length (uvicorn's JSON do)."""

    IDLE_SECONDS = 2.0  # uvicorn closes keep-alive connections idle for 5 s

    def __init__(self) -> None:
        self._idle: dict[
            tuple[str, int], list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]]
        ] = {}

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST and return (status, body); raises OSError/ValueError on a broken exchange."""
        parts = urlsplit(url)
        if parts.hostname != "127.0.0.1":
            raise ValueError("the benchmark only talks to 127.0.0.1")
        key = (parts.hostname, parts.port or 80)
        idle = self._idle.setdefault(key, [])
        now = time.monotonic()
        while idle and now - idle[0][0] > self.IDLE_SECONDS:  # oldest first: drop stale ones
            idle.pop(0)[2].close()
        if idle:
            _, reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(*key)
        try:
            head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}",
                    f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            answer = await reader.readexactly(int(fields.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if fields.get("connection", "").lower() == "close":
            writer.close()
        else:
            idle.append((time.monotonic(), reader, writer))
        return status, answer

    async def aclose(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for _, _, writer in idle:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        self._idle.clear()


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process used so far; 0 when unreadable (not Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(stack: ProcessStack) -> dict[str, float]:
    """CPU seconds used so far by each part: our processes, Redis, PostgreSQL's backends of
    our database (those alive now), and this load generator."""
    found: dict[str, float] = {}
    for proc in stack.procs:
        if proc.pid is not None:
            found[proc.name] = _cpu_of(proc.pid)
    if stack.redis is not None and stack.redis.proc is not None:
        found["redis"] = _cpu_of(stack.redis.proc.pid)
    if stack.database is not None:
        total = 0.0
        with contextlib.suppress(OSError):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    cmdline = (entry / "cmdline").read_bytes()
                    if b"postgres" in cmdline and stack.database.name.encode() in cmdline:
                        total += _cpu_of(int(entry.name))
        found["postgres"] = total
    times = os.times()
    found["load generator"] = times.user + times.system
    return found


def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine so far, from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / ticks, total / ticks


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values (nan when empty)."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


async def drive(
    run: Run, bases: list[str], inbox_id: int, secret: str, socket: EventCollector
) -> None:
    """Send the load; return when every request got its answer (or error).

    rate: open loop, a slot is a POST in flight. max: a slot is a message sent and not yet
    seen as message.created on the websocket (end to end). max-accept: a slot is a POST in
    flight, sent as fast as they are answered (the bus absorbs what the workers cannot).
    """
    args = run.args
    cap = args.in_flight
    slots = asyncio.Semaphore(cap)
    window: set[str] = set()  # mode max: sent, not yet seen on the websocket

    def seen(external_id: str) -> None:
        if external_id in window:
            window.discard(external_id)
            slots.release()

    if args.mode == "max":
        socket.on_created = seen
    limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
    raw = RawClient()
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0), limits=limits) as http:
        pending: set[asyncio.Task[None]] = set()

        async def exchange(url: str, body: bytes) -> tuple[int, str]:
            if args.client == "httpx":
                response = await post_signed(http, url, secret, body)
                return response.status_code, response.text
            status, answer = await asyncio.wait_for(
                raw.post(url, body, signed_headers(secret, body)), 30
            )
            return status, answer.decode(errors="replace")

        async def send(n: int, sample: Sample) -> None:
            url = f"{bases[n % len(bases)]}/webhooks/api/{inbox_id}"
            sender = f"bench-{n % args.senders:04d}"
            body = webhook_body(sample.external_id, sender, f"{sender} message {n}")
            if args.mode == "max":
                window.add(sample.external_id)
            sample.sent = time.perf_counter()
            try:
                sample.status, text = await exchange(url, body)
                if sample.status != 202:
                    sample.error = f"{sample.status} {text[:120]}"
            except (httpx.HTTPError, OSError, ValueError, TimeoutError,
                    asyncio.IncompleteReadError) as exc:
                sample.error = f"{type(exc).__name__}: {exc}"[:160]
            finally:
                sample.answered = time.perf_counter()
                if args.mode != "max":
                    slots.release()
                elif sample.status != 202:
                    seen(sample.external_id)  # no event will come for it

        loop = asyncio.get_running_loop()
        run.start = time.perf_counter()
        stop_at = run.start + args.seconds
        hard_stop = stop_at + max(5.0, args.seconds / 2)  # an open loop that falls far behind
        closed_loop = args.mode != "rate"
        total = MAX_MESSAGES if closed_loop else min(MAX_MESSAGES, int(args.rate * args.seconds))
        for n in range(total):
            if closed_loop:
                try:
                    await asyncio.wait_for(slots.acquire(), STALL_SECONDS)
                except TimeoutError:
                    run.truncated = True  # nothing came back for a long time: stalled
                    break
                now = time.perf_counter()
                if now >= stop_at:
                    slots.release()
                    break
                sample = Sample(f"{args.prefix}-{n}", now)
            else:
                if time.perf_counter() > hard_stop:
                    run.truncated = True
                    break
                due = run.start + n / args.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if slots.locked():
                    run.delayed += 1
                await slots.acquire()
                sample = Sample(f"{args.prefix}-{n}", due)
            run.samples.append(sample)
            task = loop.create_task(send(n, sample))
            pending.add(task)
            task.add_done_callback(pending.discard)
        run.send_end = time.perf_counter()
        if pending:
            await asyncio.wait(pending, timeout=60)
        await raw.aclose()
    socket.on_created = None


async def wait_drained(run: Run, stack: ProcessStack, socket: EventCollector,
                       inbox_id: int, expected_ids: list[str]) -> None:
    """Wait (bounded) until every accepted message's event arrived and SQL agrees."""
    deadline = time.monotonic() + run.args.drain
    missing = list(expected_ids)
    while True:
        missing = [i for i in missing if i not in socket.created]
        stored, _ = await stack.inbound_counts(inbox_id)
        run.stored_sql = stored
        stored_all = stored >= len(expected_ids) + run.args.warmup
        # After a resync some events never come: then SQL alone says when all is stored.
        if stored_all and (not missing or socket.resyncs):
            run.drained = True
            return
        if time.monotonic() > deadline or socket.closed is not None:
            return
        await asyncio.sleep(0.1)


def report(run: Run, socket: EventCollector) -> dict[str, Any]:
    """Compute the figures (and print them)."""
    args = run.args
    samples = run.samples
    accepted = [s for s in samples if s.status == 202]
    failed = [s for s in samples if s.status != 202]
    send_window = run.send_end - run.start
    first_send = min((s.sent for s in samples), default=run.start)
    last_answer = max((s.answered for s in accepted), default=math.nan)
    created = [(s, socket.created[s.external_id]) for s in accepted
               if s.external_id in socket.created]
    last_created = max((t for _, t in created), default=math.nan)
    latencies = sorted(t - s.sent for s, t in created)
    post_latencies = sorted(s.answered - s.sent for s in accepted)
    in_window = sum(1 for _, t in created if t <= run.send_end)
    per_second: dict[int, int] = {}
    for _, t in created:
        second = int(t - run.start)
        per_second[second] = per_second.get(second, 0) + 1
    full_seconds = [per_second.get(i, 0) for i in range(int(send_window))]
    steady = sorted(full_seconds[len(full_seconds) // 4:]) if full_seconds else []

    result: dict[str, Any] = {
        "shape": args.shape,
        "mode": args.mode,
        "webs": args.webs if args.shape == "production" else 1,
        "workers": args.workers if args.shape == "production" else 1,
        "in_flight_cap": args.in_flight,
        "senders": args.senders,
        "target_rate": args.rate if args.mode == "rate" else None,
        "send_seconds": round(send_window, 2),
        "sent": len(samples),
        "offered_rate": round(len(samples) / send_window, 1) if send_window else None,
        "delayed_by_cap": run.delayed,
        "accepted": len(accepted),
        "failed": len(failed),
        "accepted_per_s": round(len(accepted) / (last_answer - first_send), 1)
        if accepted else 0.0,
        "stored_events": len(created),
        "stored_sql": run.stored_sql - args.warmup,
        "stored_per_s": round(len(created) / (last_created - first_send), 1)
        if created else 0.0,
        "stored_per_s_while_sending": round(in_window / send_window, 1) if send_window else None,
        "stored_per_s_steady_median": steady[len(steady) // 2] if steady else None,
        "backlog_at_send_end": len(accepted) - in_window,
        "drain_seconds": round(last_created - run.send_end, 2) if created else None,
        "drained": run.drained,
        "truncated": run.truncated,
        "resyncs": len(socket.resyncs),
        "latency_ms": {
            name: round(percentile(latencies, p) * 1000, 1)
            for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        },
        "post_latency_ms": {
            name: round(percentile(post_latencies, p) * 1000, 1)
            for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        },
        "errors": sorted({s.error or "" for s in failed})[:5],
        "setup_seconds": round(run.setup_seconds, 1),
    }
    lines = [
        f"shape {result['shape']} ({result['webs']} web, {result['workers']} worker), "
        f"{result['mode']}, in-flight cap {args.in_flight}, {args.senders} senders",
        f"  offered:   {result['sent']} messages in {result['send_seconds']} s = "
        f"{result['offered_rate']}/s"
        + (f" (target {args.rate}/s; {run.delayed} delayed by the cap)"
           if args.mode == "rate" else ""),
        f"  accepted:  {result['accepted']} (202) = {result['accepted_per_s']}/s; "
        f"failed {result['failed']}",
        f"  stored:    {result['stored_events']} events ({result['stored_sql']} in SQL) = "
        f"{result['stored_per_s']}/s overall, {result['stored_per_s_while_sending']}/s while "
        f"sending (steady median {result['stored_per_s_steady_median']}/s); backlog at end of "
        f"sending {result['backlog_at_send_end']}, drained in {result['drain_seconds']} s",
        "  latency POST sent -> message.created on the websocket: "
        + ", ".join(f"{k} {_ms(v / 1000)}" for k, v in result["latency_ms"].items()),
        "  latency POST sent -> 202: "
        + ", ".join(f"{k} {_ms(v / 1000)}" for k, v in result["post_latency_ms"].items()),
    ]
    if args.timeline:
        lines.append("  per second: sent, accepted, stored, p50/max latency of its sends")
        for second in range(math.ceil(send_window)):
            sent_here = [s for s in samples if int(s.sent - run.start) == second]
            lat = sorted(t - s.sent for s, t in created if int(s.sent - run.start) == second)
            acc = sum(1 for s in accepted if int(s.answered - run.start) == second)
            lines.append(
                f"    {second:3d}s  {len(sent_here):5d} {acc:5d} {per_second.get(second, 0):5d}"
                f"  {_ms(percentile(lat, 50))} / {_ms(percentile(lat, 100))}"
            )
    if result["resyncs"]:
        lines.append(f"  websocket resyncs: {result['resyncs']} (events were dropped for us)")
    if run.cpu and created:
        per = ", ".join(f"{name} {seconds * 1000 / len(created):.2f}"
                        for name, seconds in run.cpu.items())
        lines.append(f"  CPU ms per stored message: {per}")
        result["cpu_ms_per_message"] = {
            name: round(seconds * 1000 / len(created), 3) for name, seconds in run.cpu.items()
        }
    busy, total = run.machine
    if total > 0:
        ours = sum(run.cpu.values())
        others = max(0.0, busy - ours)
        result["machine_busy_pct"] = round(100 * busy / total, 1)
        result["other_processes_pct"] = round(100 * others / total, 1)
        lines.append(
            f"  machine CPU during the run: {result['machine_busy_pct']}% busy, of which "
            f"{result['other_processes_pct']}% outside this benchmark's processes"
        )
    if run.truncated:
        lines.append("  TRUNCATED: the open loop fell too far behind its schedule")
    if not run.drained:
        lines.append(f"  NOT DRAINED within {args.drain} s")
    if failed:
        lines.append(f"  errors: {result['errors']}")
    print("\n".join(lines), flush=True)
    return result


async def main(args: argparse.Namespace) -> int:
    """Start the stack, run, report, tear down."""
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sb-bench-"))
    stack = ProcessStack(
        workdir, args.shape, log_level=args.log_level, env={
            "SWITCHBOARD_WORKER_CONCURRENCY": str(args.worker_concurrency),
        },
    )
    run = Run(args)
    began = time.perf_counter()
    try:
        await stack.start()
        if args.shape == "production":
            webs = [stack.web(f"web-{i + 1}") for i in range(args.webs)]
            for i in range(args.workers):
                stack.worker(f"worker-{i + 1}")
        else:
            webs = [stack.serve("serve")]
        await stack.wait_ready(timeout=60)
        setup = await bootstrap(stack, webs[0].base_url)
        async with setup:
            socket = await EventCollector.open(webs[-1].ws_url, setup.session_cookie)
            socket.keep_events = False
            try:
                # Warm-up, not measured: connections, caches, and (by default) one message
                # per sender, so the run measures conversations that exist already.
                async with httpx.AsyncClient(timeout=30) as http:
                    warm = [f"warm-{i}" for i in range(args.warmup)]
                    for i, external_id in enumerate(warm):
                        body = webhook_body(external_id, f"bench-{i % args.senders:04d}",
                                            "warm-up")
                        base = webs[i % len(webs)].base_url
                        response = await post_signed(
                            http, f"{base}/webhooks/api/{setup.inbox_id}", setup.secret, body
                        )
                        if response.status_code != 202:
                            raise RuntimeError(f"warm-up refused: {response.status_code}")
                    await socket.wait_created(warm, timeout=60)
                run.setup_seconds = time.perf_counter() - began
                cpu_before = cpu_snapshot(stack)
                machine_before = machine_busy()
                await drive(run, [w.base_url for w in webs], setup.inbox_id, setup.secret, socket)
                accepted = [s.external_id for s in run.samples if s.status == 202]
                await wait_drained(run, stack, socket, setup.inbox_id, accepted)
                cpu_after = cpu_snapshot(stack)
                run.cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0)
                           for name in cpu_after}
                machine_after = machine_busy()
                run.machine = (machine_after[0] - machine_before[0],
                               machine_after[1] - machine_before[1])
            finally:
                await socket.close()
        result = report(run, socket)
        for proc in stack.procs:
            if not proc.alive:
                print(f"  process {proc.name} died:\n{proc.log_tail(20)}")
        result["machine"] = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
        result["command"] = " ".join([Path(sys.executable).name, *sys.argv])
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        ok = not result["failed"] and (run.drained or args.mode == "max-accept")
        return 0 if ok else 1
    finally:
        await stack.close()
        if args.keep:
            print(f"  logs kept in {stack.log_dir}")
        elif not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=["production", "embedded"], default="production")
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second (open loop)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send")
    parser.add_argument("--max", action="store_true",
                        help="closed loop, end to end: keep --in-flight messages sent and not yet "
                        "seen on the websocket; finds the sustained (stored) throughput")
    parser.add_argument("--max-accept", action="store_true",
                        help="closed loop on the 202 only: --in-flight POSTs as fast as they are "
                        "answered; finds the webhook acceptance capacity (the bus absorbs the "
                        "rest, which may not drain within --drain)")
    parser.add_argument("--webs", type=int, default=2, help="web processes (production)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (production)")
    parser.add_argument("--in-flight", type=int, default=None,
                        help="cap of outstanding POSTs (default 256 open loop, 64 with --max)")
    parser.add_argument("--senders", type=int, default=200, help="distinct customers")
    parser.add_argument("--worker-concurrency", type=int, default=8,
                        help="SWITCHBOARD_WORKER_CONCURRENCY of each worker")
    parser.add_argument("--drain", type=float, default=60.0,
                        help="longest wait for the backlog after sending")
    parser.add_argument("--warmup", type=int, default=None,
                        help="unmeasured messages first, one per sender in turn (default: "
                        "--senders, so every conversation exists; 0: the run opens them)")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="load generator's HTTP client (raw: lean keep-alive HTTP/1.1)")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--prefix", default="bench", help="external id prefix")
    parser.add_argument("--timeline", action="store_true", help="print per-second figures")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--workdir", help="keep the stack's files here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    args = parser.parse_args(argv)
    if args.max and args.max_accept:
        parser.error("choose one of --max and --max-accept")
    args.mode = "max" if args.max else "max-accept" if args.max_accept else "rate"
    if args.warmup is None:
        args.warmup = args.senders
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.in_flight is None:
        args.in_flight = {"rate": 256, "max": 50, "max-accept": 64}[args.mode]
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS}]")
    if args.mode == "rate" and not 0 < args.rate * args.seconds <= MAX_MESSAGES:
        parser.error(f"--rate x --seconds must be in (0, {MAX_MESSAGES}]")
    if not 0 < args.drain <= MAX_DRAIN:
        parser.error(f"--drain must be in (0, {MAX_DRAIN}]")
    if not 1 <= args.in_flight <= 1024:
        parser.error("--in-flight must be in [1, 1024]")
    if not (1 <= args.webs <= 8 and 1 <= args.workers <= 8):
        parser.error("--webs and --workers must be in [1, 8]")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(runner(main(arguments)))
    sys.exit(130)
