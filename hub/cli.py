"""The `switchboard` command: serve, web, worker, migrate, createuser, demo, and the
maintenance ones (dead letters, secret keys, the attachment store's sweep)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import sys
from collections.abc import Sequence

from config import Settings, SettingsError, load_settings
from config.logging import setup_logging
from hub.bus import Bus

# The largest websocket message a client may send: a visitor's message (5,000 characters,
# as JSON) with room to spare; agents send only pings.
WS_MAX_BYTES = 64 * 1024


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"switchboard: invalid settings\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_level)
    return settings


def _migrate(settings: Settings) -> None:
    from inbox.migrate import upgrade

    upgrade(settings.sqlalchemy_url)


def _shared_key_warning(settings: Settings) -> None:
    """Processes on several machines must share the key that seals channel secrets."""
    if settings.database_url.startswith("postgresql") and \
            not settings.secret_key.get_secret_value():
        logging.getLogger("switchboard").warning(
            "SWITCHBOARD_SECRET_KEY is not set: channel secrets are sealed with the key in "
            "%s, which only processes on this machine share; set SWITCHBOARD_SECRET_KEY "
            "(switchboard secret-key makes one) when web or worker processes run elsewhere",
            settings.data_dir / "secret.key")


def _serve(settings: Settings, *, with_worker: bool) -> None:
    import uvicorn

    from hub.app import create_app

    _shared_key_warning(settings)
    uvicorn.run(
        create_app(settings, with_worker=with_worker),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Forwarded headers only from the proxies the settings name: from anyone else they
        # are whatever the client wants them to be.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        ws="websockets-sansio",
        # No permessage-deflate: it costs each connection ~58 KiB of zlib state and each
        # event one compression per connection (bench/websocket_fanout.py, docs/performance.md);
        # events are small JSON, and a process holds thousands of sockets.
        ws_per_message_deflate=False,
        # Clients send small control frames only (pings, a visitor's hello and messages).
        ws_max_size=WS_MAX_BYTES,
        lifespan="on",
    )


def cmd_serve(args: argparse.Namespace) -> None:
    """Everything in one process on the embedded defaults: web, worker, pollers."""
    settings = _settings(args)
    _migrate(settings)
    _serve(settings, with_worker=True)


def cmd_web(args: argparse.Namespace) -> None:
    """A web process (API, webhooks, websockets); run any number behind a load balancer."""
    _serve(_settings(args), with_worker=False)


def cmd_worker(args: argparse.Namespace) -> None:
    """A worker process: threads inbound messages and sends replies."""
    from hub.app import run_worker

    settings = _settings(args)
    _shared_key_warning(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())


def cmd_migrate(args: argparse.Namespace) -> None:
    """Bring the database schema up to date."""
    settings = _settings(args)
    _migrate(settings)
    print("database is up to date")


def cmd_createuser(args: argparse.Namespace) -> None:
    """Create an agent, team lead or admin."""
    from hub.seed import create_user
    from inbox.agents import AgentError

    settings = _settings(args)
    password = os.environ.get("SWITCHBOARD_NEW_PASSWORD") or getpass.getpass("Password: ")
    try:
        agent_id, email = asyncio.run(
            create_user(settings, email=args.email, name=args.name or args.email,
                        password=password, role=args.role, inbox_ids=args.inbox)
        )
    except AgentError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"created {args.role} {email} (id {agent_id})")


def cmd_demo(args: argparse.Namespace) -> None:
    """Seed demo data, print the logins, and serve everything in one process."""
    from hub.seed import seed_demo

    settings = _settings(args).model_copy(update={"demo_page": True})
    if getattr(args, "reset", False):
        _reset_demo(settings)
    _migrate(settings)
    print(asyncio.run(seed_demo(settings)))
    print(f"Listening on {settings.host}:{settings.port} only. Stop with Ctrl+C; "
          "start over with ./scripts/demo --reset.", flush=True)
    _serve(settings, with_worker=True)


def _reset_demo(settings: Settings) -> None:
    """Delete the embedded database and bus of the demo, so it starts over seeded afresh."""
    if settings.database_url or settings.redis_url:
        raise SystemExit("demo --reset starts over the embedded demo data only; "
                         "SWITCHBOARD_DATABASE_URL / SWITCHBOARD_REDIS_URL are set")
    removed = 0
    for name in ("switchboard.db", "bus.db"):
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = settings.data_dir / (name + suffix)
            if path.exists():
                path.unlink()
                removed += 1
    print(f"Demo data in {settings.data_dir}/ removed ({removed} files): starting over.")


def cmd_secret_key(args: argparse.Namespace) -> None:
    """Print a new key for SWITCHBOARD_SECRET_KEY."""
    from hub.secrets import new_key

    print(new_key())


def cmd_reseal(args: argparse.Namespace) -> None:
    """Seal every channel secret again with the first key of SWITCHBOARD_SECRET_KEY."""
    import httpx

    from channels.base import secret_names
    from channels.registry import build_channels
    from hub.secrets import SecretKeyError, SecretsUnreadable, secret_box
    from inbox.db import Database
    from inbox.inboxes import reseal_inboxes

    settings = _settings(args)

    async def main() -> int:
        box = secret_box(settings.secret_key.get_secret_value(), settings.data_dir)
        async with httpx.AsyncClient() as http:
            names = {kind: secret_names(adapter.settings)
                     for kind, adapter in build_channels(settings, http).items()}
        db = Database(settings.sqlalchemy_url)
        try:
            return await reseal_inboxes(db, box, names)
        finally:
            await db.close()

    try:
        changed = asyncio.run(main())
    except (SecretKeyError, SecretsUnreadable) as exc:
        print(f"switchboard: {exc}; nothing was changed", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"sealed the secrets of {changed} inbox(es) with the first key")


def cmd_attachments(args: argparse.Namespace) -> None:
    """Find, and with --delete remove, stored files no attachment row points at."""
    from datetime import timedelta

    from inbox.blobs import DATABASE, BlobError, Blobs
    from inbox.db import Database
    from inbox.housekeeping import Sweep, sweep_files

    settings = _settings(args)
    kind = args.store or settings.attachment_storage
    if kind == DATABASE:
        print("switchboard: attachments are kept in the database "
              "(SWITCHBOARD_ATTACHMENT_STORAGE); name the store to sweep with --store",
              file=sys.stderr)
        raise SystemExit(2)

    async def main() -> Sweep:
        blobs, db = Blobs(settings), Database(settings.sqlalchemy_url)
        try:
            return await sweep_files(db, blobs.store(kind),
                                     older_than=timedelta(hours=args.older_than_hours),
                                     delete=args.delete)
        finally:
            await blobs.close()
            await db.close()

    try:
        found = asyncio.run(main())
    except (BlobError, ValueError) as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{kind} store: {found.looked_at} file(s) older than {args.older_than_hours:g} "
          f"hours looked at, {found.unreferenced} unreferenced ({found.unreferenced_bytes} "
          "bytes)")
    if args.delete:
        print(f"deleted {found.deleted} file(s)")
    elif found.unreferenced:
        print("nothing was deleted: run again with --delete to remove them")


def cmd_dead_letters(args: argparse.Namespace) -> None:
    """List, show, replay or discard the entries that failed too often."""
    from hub import dead_letters
    from hub.app import build_bus

    settings = _settings(args)

    async def run() -> int:
        bus = build_bus(settings)
        await bus.start()
        try:
            return await _dead_letters(bus, args)
        finally:
            await bus.close()

    try:
        raise SystemExit(asyncio.run(run()))
    except (dead_letters.UnknownStream, ValueError) as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _dead_letters(bus: Bus, args: argparse.Namespace) -> int:
    import json

    from hub import dead_letters

    stream = args.stream
    if args.action == "list":
        letters = await dead_letters.list_dead_letters(bus, stream, limit=args.limit)
        if not letters:
            print(f"no dead letters in {stream}")
        for d in letters:
            about = " ".join(f"{k}={v}" for k, v in (
                ("channel", d.channel), ("inbox", d.inbox_id), ("external_id", d.external_id),
                ("message", d.message_id)) if v is not None)
            print(f"{d.id}  {d.kind}  {about}  deliveries={d.deliveries}  {d.reason[:120]}")
        return 0
    if not args.ids and not args.all:
        print("switchboard: name the dead letters (ids), or --all", file=sys.stderr)
        return 2
    if args.action == "replay" and args.all:
        print(f"replayed {await dead_letters.replay_all(bus, stream)}")
        return 0
    missing = 0
    for dead_id in args.ids:
        if args.action == "show":
            letter = await dead_letters.find_dead_letter(bus, stream, dead_id)
            if letter is None:
                missing += 1
                print(f"{dead_id}: no such dead letter", file=sys.stderr)
                continue
            summary = dead_letters.view(stream, letter).model_dump()
            try:
                summary["payload"] = json.loads(letter.payload)
            except ValueError:
                summary["payload"] = letter.payload.decode(errors="replace")
            print(json.dumps(summary, indent=2, default=str))
        elif args.action == "replay":
            new_id = await dead_letters.replay(bus, stream, dead_id)
            missing += new_id is None
            print(f"{dead_id}: " + (f"back on {stream} as {new_id}" if new_id else "not found"))
        else:
            gone = await dead_letters.discard(bus, stream, dead_id)
            missing += not gone
            print(f"{dead_id}: " + ("discarded" if gone else "not found"))
    return 1 if missing else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Switchboard: an omnichannel shared inbox. Settings come from "
        "SWITCHBOARD_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: object, help_: str, *, listens: bool = False
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        if listens:
            p.add_argument("--host", help="interface to bind (default SWITCHBOARD_HOST)")
            p.add_argument("--port", type=int, help="port to listen on (default SWITCHBOARD_PORT)")
        return p

    add("serve", cmd_serve, "Run web, worker and pollers in one process (embedded defaults).",
        listens=True)
    add("web", cmd_web, "Run a web process (API, webhooks, websockets).", listens=True)
    add("worker", cmd_worker, "Run a worker process (threading, sending).")
    add("migrate", cmd_migrate, "Apply database migrations.")
    user = add("createuser", cmd_createuser,
               "Create an agent (password from SWITCHBOARD_NEW_PASSWORD or a prompt).")
    user.add_argument("--email", required=True)
    user.add_argument("--name")
    user.add_argument("--role", choices=["agent", "lead", "admin"], default="agent")
    user.add_argument("--inbox", type=int, action="append", default=[],
                      help="inbox id to join (repeatable)")
    demo = add("demo", cmd_demo, "Seed demo data, print the logins, and serve.", listens=True)
    demo.add_argument("--reset", action="store_true",
                      help="delete the demo's database and bus first, and seed afresh")
    add("secret-key", cmd_secret_key, "Print a new key for SWITCHBOARD_SECRET_KEY.")
    add("reseal", cmd_reseal, "Seal every channel secret again with the first key of "
        "SWITCHBOARD_SECRET_KEY (after adding a new key in front; then drop the old one).")
    files = add("attachments", cmd_attachments,
                "Sweep the attachment store (directory or bucket) for files no attachment "
                "points at: a process stopped between writing a file and recording it.")
    files.add_argument("action", choices=["sweep"])
    files.add_argument("--store", choices=["directory", "s3"],
                       help="the store to sweep (default SWITCHBOARD_ATTACHMENT_STORAGE)")
    files.add_argument("--older-than-hours", type=float, default=24.0,
                       help="only files at least this old (default 24, at least 1)")
    files.add_argument("--delete", action="store_true",
                       help="remove what is found (without it, only report)")
    dead = add("dead-letters", cmd_dead_letters,
               "List, show, replay or discard bus entries that failed too often "
               "(outages never put anything here).")
    dead.add_argument("action", choices=["list", "show", "replay", "discard"])
    dead.add_argument("ids", nargs="*", metavar="ID", help="dead letter ids (from list)")
    dead.add_argument("--stream", choices=["inbound", "outbound"], default="inbound")
    dead.add_argument("--all", action="store_true", help="with replay: every dead letter")
    dead.add_argument("--limit", type=int, default=100, help="with list: at most this many")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `switchboard` command."""
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
