"""The `switchboard` command: serve, web, worker, migrate, createuser, demo."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
from collections.abc import Sequence

from config import Settings, SettingsError, load_settings
from config.logging import setup_logging


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


def _serve(settings: Settings, *, with_worker: bool) -> None:
    import uvicorn

    from hub.app import create_app

    uvicorn.run(
        create_app(settings, with_worker=with_worker),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=True,
        ws="websockets-sansio",
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
    _migrate(settings)
    print(asyncio.run(seed_demo(settings)))
    _serve(settings, with_worker=True)


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
    add("demo", cmd_demo, "Seed demo data, print the logins, and serve.", listens=True)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `switchboard` command."""
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
