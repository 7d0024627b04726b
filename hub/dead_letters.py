"""Dead letters: what they are, for the admin page, the API and `switchboard dead-letters`.

An entry lands in a stream's dead letters only after it failed on a healthy database and
bus (hub/consumer.py); outages never put anything there. Replaying one puts its payload
back on its stream as a new entry: the workers handle it again (ingest deduplicates, a send
request that already left is skipped).
"""

from __future__ import annotations

from pydantic import BaseModel

from hub.bus import INBOUND, OUTBOUND, Bus, DeadLetter, dead_letter_stream, parse_id
from hub.types import InboundMessage, OutboundMessage, StatusUpdate, decode

STREAMS = (INBOUND, OUTBOUND)
PAGE = 100


class UnknownStream(ValueError):
    """A stream without dead letters (only inbound and outbound have them)."""


class DeadLetterView(BaseModel):
    """A dead letter as an admin sees it: what it is about, never the customer's words."""

    stream: str
    id: str
    original_id: str
    reason: str
    group: str
    deliveries: int
    kind: str
    channel: str | None
    inbox_id: int | None
    external_id: str | None
    message_id: int | None


def check_stream(stream: str) -> str:
    """The stream name, or UnknownStream."""
    if stream not in STREAMS:
        raise UnknownStream(f"stream must be one of {', '.join(STREAMS)}")
    return stream


def view(stream: str, letter: DeadLetter) -> DeadLetterView:
    """What a dead letter is about, from its payload (which may not even decode)."""
    kind, channel, inbox_id, external_id, message_id = "undecodable", None, None, None, None
    try:
        item = decode(letter.payload)
    except ValueError:
        pass
    else:
        kind, channel, inbox_id = item.type, item.channel, item.inbox_id
        if isinstance(item, InboundMessage | StatusUpdate):
            external_id = item.external_id
        elif isinstance(item, OutboundMessage):
            message_id = item.message_id
    return DeadLetterView(
        stream=stream, id=letter.id, original_id=letter.original_id, reason=letter.reason,
        group=letter.group, deliveries=letter.deliveries, kind=kind, channel=channel,
        inbox_id=inbox_id, external_id=external_id, message_id=message_id,
    )


async def list_dead_letters(
    bus: Bus, stream: str, *, after: str = "0-0", limit: int = PAGE
) -> list[DeadLetterView]:
    """A page of a stream's dead letters, oldest first."""
    parse_id(after)
    letters = await bus.dead_letters(check_stream(stream), after, max(1, min(limit, 1000)))
    return [view(stream, letter) for letter in letters]


async def find_dead_letter(bus: Bus, stream: str, dead_id: str) -> DeadLetter | None:
    """One dead letter by id (payload included), or None."""
    ms, seq = parse_id(dead_id)
    before = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**64 - 1}" if ms else "0-0"
    found = await bus.dead_letters(check_stream(stream), before, 1)
    return found[0] if found and found[0].id == dead_id else None


async def count(bus: Bus) -> dict[str, int]:
    """How many dead letters each stream has."""
    return {stream: await bus.length(dead_letter_stream(stream)) for stream in STREAMS}


async def replay(bus: Bus, stream: str, dead_id: str) -> str | None:
    """Put one back on its stream; the new entry's id, or None when there is no such one."""
    parse_id(dead_id)
    return await bus.replay_dead_letter(check_stream(stream), dead_id)


async def replay_all(bus: Bus, stream: str) -> int:
    """Put every dead letter of a stream back; how many."""
    done = 0
    while True:
        page = await bus.dead_letters(check_stream(stream), "0-0", PAGE)
        if not page:
            return done
        for letter in page:
            if await bus.replay_dead_letter(stream, letter.id) is not None:
                done += 1


async def discard(bus: Bus, stream: str, dead_id: str) -> bool:
    """Delete one for good."""
    parse_id(dead_id)
    return await bus.discard_dead_letter(check_stream(stream), dead_id)
