"""What every route needs: one typed context per process, on the app's state.

`build_web` puts the WebContext on `app.state.switchboard`; a handler reaches it with
`web_context(request)` (typed), never through a module global or a closure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from channels.base import ChannelAdapter
from config import Settings
from crm_sync.base import Connector
from crm_sync.connections import CardCache
from hub.realtime import Fanout
from inbox.context import InboxContext
from web.directory import InboxDirectory
from web.limits import RateLimiter


@dataclass(frozen=True)
class WebContext:
    """Settings, the inbox context, the channel adapters and the realtime fan-out."""

    settings: Settings
    inbox: InboxContext
    channels: dict[str, ChannelAdapter]
    fanout: Fanout
    # The CRM connectors (contact cards, CRM webhooks, connecting).
    crm: Mapping[str, Connector] = field(default_factory=dict)
    cards: CardCache = field(default_factory=CardCache)
    directory: InboxDirectory = field(init=False)
    # Webhook requests per inbox (before their signature is checked: checking costs too).
    webhook_limits: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", InboxDirectory(self.inbox.db, self.inbox.secrets))
        per_second = self.settings.webhook_requests_per_second
        object.__setattr__(self, "webhook_limits", RateLimiter(
            burst=max(1, 2 * per_second), refill_seconds=1.0 / per_second, size=100_000))


def web_context(conn: HTTPConnection) -> WebContext:
    """The process's context, from the application serving this request or websocket."""
    found = getattr(conn.app.state, "switchboard", None)
    if not isinstance(found, WebContext):
        raise RuntimeError("the app has no WebContext: build it with web.app.build_web")
    return found
