"""Threading rules: which conversation an inbound message belongs to (DESIGN.md, Threading).

Pure functions over what the batch looked up (inbox/ingest.py does the looking up):

- every channel: the messages a message names (In-Reply-To, then References nearest first,
  the message a bounce reports on), known as stored messages (received or sent) or as thread
  keys left by earlier messages; a channel-verified `conversation:<id>` hint (a signed reply
  address); another thread hint (a chat id, a widget session); a thread key naming the
  message itself, left by a reply that arrived before it; and, weakest, a conversation the
  message names itself (an email subject's "[#123]"), only for the same contact;
- email (`threading="headers"`): nothing else. A new email with no such link opens a new
  conversation, even when its sender has another one open;
- chat channels (`threading="contact"`): then the contact's running conversation in the
  inbox: the newest unresolved one, else the newest resolved one.

A resolved conversation reopens on a customer's message within the reopen window; later, a
new conversation starts. Machine mail (auto-replies, bounces) only ever joins a thread that
exists and never reopens anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from hub.types import InboundMessage

# A thread hint naming a conversation directly; channels send it only once they verified
# it (e.g. a signed reply address).
DIRECT_HINT = "conversation:"
# Thread keys are bounded like the column that stores them.
MAX_KEY = 998


def parent_keys(message: InboundMessage) -> list[str]:
    """The ids a message answers, nearest first: In-Reply-To, References (newest first), and
    the message a bounce reports on."""
    keys = (message.in_reply_to, *reversed(message.references), message.bounce_of)
    return list(dict.fromkeys(k[:MAX_KEY] for k in keys if k))


def direct_conversation(message: InboundMessage) -> int | None:
    """The conversation a channel-verified hint names, if any."""
    hint = message.thread_hint
    if hint and hint.startswith(DIRECT_HINT) and hint[len(DIRECT_HINT):].isdigit():
        return int(hint[len(DIRECT_HINT):])
    return None


def hint_key(message: InboundMessage) -> str | None:
    """A thread hint that is a key of its own (not a direct conversation reference)."""
    hint = message.thread_hint
    if hint and not hint.startswith(DIRECT_HINT):
        return hint[:MAX_KEY]
    return None


def lookup_keys(message: InboundMessage) -> list[str]:
    """Every key whose owner may decide the message's conversation, strongest first (the
    message's own external id last: a reply that came before it may have left it)."""
    keys = parent_keys(message)
    hint = hint_key(message)
    if hint is not None:
        keys.append(hint)
    keys.append(message.external_id)
    return list(dict.fromkeys(keys))


def order_at(message: InboundMessage) -> datetime:
    """Where the message goes in its thread: the provider's time when it gave one (never
    later than when we received it), else when we received it."""
    provider = message.provider_ts
    if provider is None or provider > message.received_at:
        return message.received_at
    return provider


def too_old_to_reopen(
    status: str, resolved_at: datetime | None, *, now: datetime, window_seconds: int
) -> bool:
    """A resolved conversation past the reopen window: a customer's message starts anew."""
    if status != "resolved":
        return False
    return (resolved_at or now) < now - timedelta(seconds=window_seconds)


def first_found(keys: Iterable[str], found: dict[str, int]) -> int | None:
    """The conversation of the first key (in the given order) that has one."""
    return next((found[k] for k in keys if k in found), None)
