"""Email benchmark: import a full mailbox, then the delay from IMAP to the agent's screen.

Starts a private Dovecot (tests/mail_services.py) and a Switchboard (web + worker in this
process, like the `serve` command) in the chosen shape, then:

1. fills the mailbox with --emails messages (default 2,000): a third are replies, written
   by a cc'd colleague (so only the headers can thread them), and --early of the replies
   (default half) sit in the mailbox *before* their parent;
2. connects an email inbox to it and times the import: from the inbox's creation until
   every message is stored; then checks that no thread was split over two conversations;
3. appends --probes single emails one by one and times each from the end of the IMAP
   APPEND to its message.created frame on a logged-in agent's websocket (p50, p99, worst).
   Under IDLE, Dovecot itself holds each change notification for 0.5 s before it tells
   the client; --poll 0.05 follows the folder by NOOP instead, to measure Switchboard's
   own part.

Bounded and local: only 127.0.0.1; at most 20,000 emails; gives up after --timeout seconds.

    .venv/bin/python bench/email_import.py --shape embedded
    .venv/bin/python bench/email_import.py --shape production
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aioimaplib  # type: ignore[import-untyped]  # noqa: E402
from sqlalchemy import func  # noqa: E402
from sqlmodel import col, select  # noqa: E402

from config import load_settings  # noqa: E402
from inbox.db import Database  # noqa: E402
from inbox.migrate import upgrade  # noqa: E402
from inbox.models import ChannelState, Message  # noqa: E402
from tests.helpers import of_type, running_stack  # noqa: E402
from tests.mail_services import PASSWORD, DovecotServer  # noqa: E402
from tests.services import LOOPBACK, PostgresDatabase, RedisServer, free_port  # noqa: E402


def build_mailbox(
    count: int, early_share: float, seed: int = 7
) -> tuple[list[bytes], dict[str, int]]:
    """The mailbox in delivery order, and each Message-ID's thread number."""
    rng = random.Random(seed)
    roots = count - count // 3
    thread_of: dict[str, int] = {}
    order: list[tuple[int, bytes]] = []  # (position, raw)
    for n in range(roots):
        mid = f"root-{n}@customer.example"
        thread_of[mid] = n
        raw = (f"From: Customer {n % 300} <customer{n % 300}@customer.example>\r\n"
               f"To: help@acme.test\r\nSubject: Question {n}\r\nMessage-ID: <{mid}>\r\n"
               f"Date: Tue, 3 Mar 2026 10:00:00 +0000\r\n\r\nQuestion number {n}.\r\n").encode()
        order.append((2 * n + 1, raw))
    for r in range(count - roots):
        parent = rng.randrange(roots)
        mid = f"reply-{r}@colleague.example"
        thread_of[mid] = parent
        raw = (f"From: Colleague {r} <colleague{r}@partner.example>\r\nTo: help@acme.test\r\n"
               f"Subject: Re: Question {parent}\r\nMessage-ID: <{mid}>\r\n"
               f"In-Reply-To: <root-{parent}@customer.example>\r\n"
               f"References: <root-{parent}@customer.example>\r\n\r\n"
               f"Adding to question {parent}.\r\n\r\nOn Tue, Customer wrote:\r\n> Question\r\n"
               ).encode()
        early = rng.random() < early_share
        order.append((2 * parent + (0 if early else 2), raw))
    order.sort(key=lambda item: item[0])
    return [raw for _, raw in order], thread_of


async def fill(server: DovecotServer, mails: list[bytes]) -> None:
    """APPEND every mail over one connection, in order (mailbox order = this order)."""
    client = aioimaplib.IMAP4(host=LOOPBACK, port=server.port, timeout=30)
    await client.wait_hello_from_server()
    await client.login("support", PASSWORD)
    for raw in mails:
        answer = await client.append(raw, mailbox="INBOX")
        assert answer.result == "OK", answer
    await client.logout()


async def stored(db: Database) -> int:
    async with db.read() as session:
        return int((await session.exec(select(func.count()).select_from(Message).where(
            Message.direction == "in"))).one())


async def cursor_at(db: Database) -> int:
    async with db.read() as session:
        row = (await session.exec(select(ChannelState))).first()
        return int(row.value.get("last_uid", 0)) if row else 0


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sb-email-bench-"))
    server = DovecotServer.start(tmp)
    redis: RedisServer | None = None
    pg: PostgresDatabase | None = None
    base = {"data_dir": tmp / "var", "port": free_port(), "host": LOOPBACK,
            "log_level": "warning", "poller_rescan_seconds": 0.2}
    if args.shape == "production":
        redis = RedisServer.start(tmp / "redis")
        pg = PostgresDatabase.create()
        await asyncio.to_thread(upgrade, pg.sqlalchemy_url)
        settings = load_settings(**base, database_url=pg.url, redis_url=redis.url,
                                 redis_prefix=f"b{secrets.token_hex(4)}:")
    else:
        settings = load_settings(**base)
        await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    mails, thread_of = build_mailbox(args.emails, args.early)
    print(f"filling the mailbox with {len(mails)} emails ...", flush=True)
    await fill(server, mails)
    db = Database(settings.sqlalchemy_url)
    try:
        async with running_stack(settings) as stack:
            admin = await stack.login("admin")
            inbox = {**server.settings("support"), "smtp_host": LOOPBACK,
                     "from_address": "help@acme.test", "keep_original": args.keep_original}
            if args.poll:  # NOOP every --poll seconds instead of waiting for IDLE's push
                inbox |= {"imap_idle": "no", "imap_poll_seconds": args.poll}
            started = time.perf_counter()
            cpu_started = time.process_time()
            created = await admin.http.post("/api/v1/inboxes", json={
                "name": "Help", "channel": "email", "settings": inbox})
            assert created.status_code == 201, created.text
            deadline = started + args.timeout
            fetched_s: float | None = None
            while await stored(db) < len(mails):
                if fetched_s is None and await cursor_at(db) >= len(mails):
                    fetched_s = time.perf_counter() - started
                if time.perf_counter() > deadline:
                    raise SystemExit(f"gave up: {await stored(db)} of {len(mails)} stored")
                # Counting costs the database too: look a few times a second only.
                await asyncio.sleep(0.1)
            import_s = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_started
            fetched_s = fetched_s or import_s
            async with db.read() as session:
                rows = (await session.exec(select(Message.external_id, Message.conversation_id)
                                           .where(col(Message.external_id).in_(thread_of)))).all()
            conversations: dict[int, set[int]] = {}
            for external_id, conversation_id in rows:
                conversations.setdefault(thread_of[str(external_id)], set()).add(conversation_id)
            split = sum(1 for found in conversations.values() if len(found) > 1)
            threads_in: dict[int, set[int]] = {}
            for external_id, conversation_id in rows:
                threads_in.setdefault(conversation_id, set()).add(thread_of[str(external_id)])
            mixed = sum(1 for found in threads_in.values() if len(found) > 1)
            print(f"import: {len(mails)} emails in {import_s:.2f} s "
                  f"({len(mails) / import_s:.0f}/s; all fetched and on the bus after "
                  f"{fetched_s:.2f} s; this process used {cpu_s:.1f} s of CPU); "
                  f"threads: {len(conversations)}, conversations: {len(threads_in)}, "
                  f"split: {split}, mixed: {mixed}", flush=True)

            socket = await admin.ws()  # after the inbox exists: it is among the admin's now
            delays: list[float] = []
            client = aioimaplib.IMAP4(host=LOOPBACK, port=server.port, timeout=30)
            await client.wait_hello_from_server()
            await client.login("support", PASSWORD)
            for n in range(args.probes):
                text = f"probe {n} {secrets.token_hex(4)}"
                raw = (f"From: Probe <probe@customer.example>\r\nTo: help@acme.test\r\n"
                       f"Subject: probe\r\nMessage-ID: <probe-{n}-{secrets.token_hex(4)}@x>"
                       f"\r\n\r\n{text}\r\n").encode()
                sent = time.perf_counter()
                assert (await client.append(raw, mailbox="INBOX")).result == "OK"
                await socket.wait_event(of_type("message.created", text=text), timeout=30)
                delays.append(time.perf_counter() - sent)
            await client.logout()
            delays.sort()
            print(f"IMAP to agent websocket over {len(delays)} probes: "
                  f"p50 {statistics.median(delays) * 1000:.0f} ms, "
                  f"p99 {delays[max(0, math.ceil(len(delays) * 0.99) - 1)] * 1000:.0f} ms, "
                  f"worst {delays[-1] * 1000:.0f} ms", flush=True)
            await socket.close()
    finally:
        await db.close()
        server.remove()
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--early", type=float, default=0.5,
                        help="share of replies placed before their parent")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--keep-original", default="yes", choices=["yes", "no"],
                        help="store each original message as original.eml (the default)")
    parser.add_argument("--poll", type=float, default=0,
                        help="poll the folder every POLL seconds (NOOP) instead of IDLE")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    args.emails = max(3, min(args.emails, 20_000))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
