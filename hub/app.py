"""Assembly: build the parts of a process from the settings, and the ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette

from channels.base import ChannelAdapter
from channels.registry import build_channels
from config import Settings
from crm_sync.base import Connector
from crm_sync.registry import build_connectors
from crm_sync.sync import Syncer, crm_consumer
from crm_sync.webhooks import Deliverer, webhook_consumer
from hub.bus import Bus
from hub.fetch import FetchPolicy, build_http
from hub.realtime import Fanout
from hub.types import ChannelProfile
from hub.worker import Worker, default_worker_name
from inbox.automation_runner import AutomationConsumer
from inbox.context import InboxContext
from inbox.csat import CsatConsumer
from inbox.db import Database
from inbox.event_consumers import SharedReader
from inbox.report_rollups import ReportsConsumer
from inbox.sla import SlaConsumer
from web.app import build_web
from web.context import WebContext

log = logging.getLogger("switchboard")


def build_bus(settings: Settings) -> Bus:
    """The Redis bus when SWITCHBOARD_REDIS_URL is set, else the embedded one."""
    if settings.embedded:
        from hub.embedded_bus import EmbeddedBus

        return EmbeddedBus(settings.data_dir / "bus.db")
    from hub.redis_bus import RedisBus

    return RedisBus(settings.redis_url, settings.redis_prefix)


@dataclass
class Runtime:
    """Everything a process holds: built once at start, closed once at exit."""

    settings: Settings
    db: Database
    bus: Bus
    http: httpx.AsyncClient
    channels: dict[str, ChannelAdapter]
    inbox: InboxContext
    crm: dict[str, Connector]

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Build (without connecting) the parts named by the settings."""
        db = Database(settings.sqlalchemy_url)
        bus = build_bus(settings)
        http = build_http(FetchPolicy.from_entries(settings.outbound_allow,
                                                   allow_http=settings.outbound_http))
        channels = build_channels(settings, http)
        profiles = {kind: ChannelProfile(adapter.display_name, adapter.capabilities)
                    for kind, adapter in channels.items()}
        return cls(
            settings=settings,
            db=db,
            bus=bus,
            http=http,
            channels=channels,
            inbox=InboxContext(settings=settings, db=db, bus=bus, channels=profiles),
            crm=build_connectors(http),
        )

    async def start(self) -> None:
        """Connect to the bus."""
        await self.bus.start()

    async def close(self) -> None:
        """Close every connection."""
        await self.http.aclose()
        await self.inbox.blobs.close()
        await self.bus.close()
        await self.db.close()

    def worker(self) -> Worker:
        """A worker over this runtime's bus and database."""
        name = self.settings.worker_name or default_worker_name()
        automation = AutomationConsumer()
        return Worker(
            self.inbox, self.channels, name=name,
            # One read of the events stream for all of them (each applies an event once).
            event_consumers=[SharedReader("integrations", (
                webhook_consumer(), crm_consumer(), SlaConsumer(), automation,
                CsatConsumer(), ReportsConsumer(self.settings.report_time_zone)))],
            services=[Deliverer(self.inbox, self.http).run,
                      Syncer(self.inbox, self.crm, owner=name).run,
                      functools.partial(automation.run_timers, self.inbox)],
        )


_settled = False


def settle_after_start() -> None:
    """Leave what the process built while starting out of every later garbage collection.

    Python's full collections walk every object that lives long: the modules, the mapped
    classes, the settings; with them, a full collection paused a web process for 70-106
    ms, about once every hundred searches (bench/list_search.py, docs/performance.md).
    Frozen, those are never walked again; what is made afterwards is collected as before.
    Once a process: a process that starts several apps (the tests) keeps the cycles of
    the later ones collectable.
    """
    global _settled
    if not _settled:
        _settled = True
        gc.collect()
        gc.freeze()


def create_app(settings: Settings, *, with_worker: bool = False) -> Starlette:
    """The ASGI app of a web process; with_worker also runs the worker in it (embedded)."""
    runtime = Runtime.build(settings)
    fanout = Fanout(runtime.bus, queue_size=settings.websocket_queue_events)
    ctx = WebContext(settings=settings, inbox=runtime.inbox, channels=runtime.channels,
                     crm=runtime.crm,
                     fanout=fanout)
    fanout.on_event("inbox.changed", ctx.directory.invalidate)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        await fanout.start()
        await asyncio.wait_for(fanout.wait_ready(), timeout=30)
        await presence.start()
        settle_after_start()
        stop = asyncio.Event()
        worker_task = (
            asyncio.create_task(runtime.worker().run(stop), name="worker") if with_worker else None
        )
        try:
            yield
        finally:
            stop.set()
            if worker_task is not None:
                try:
                    await asyncio.wait_for(worker_task, timeout=10)
                except (TimeoutError, asyncio.CancelledError):
                    worker_task.cancel()
            await presence.stop()
            await fanout.stop()
            await runtime.close()

    app, presence = build_web(ctx, lifespan)
    return app


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """A worker process: consume the streams until `stop` is set."""
    runtime = Runtime.build(settings)
    await runtime.start()
    settle_after_start()
    try:
        await runtime.worker().run(stop)
    finally:
        await runtime.close()
