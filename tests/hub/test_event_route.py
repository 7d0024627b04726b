"""Who an event is for: read off the front of the payload, the same as parsing it whole."""

from __future__ import annotations

import json

from hub.events import (
    AgentUpdated,
    InboxChanged,
    NotificationCreated,
    NotificationView,
    encode_event,
)
from hub.realtime import EventRoute, event_route
from hub.types import utcnow


def _parsed(payload: bytes) -> EventRoute:
    # The same payload re-serialised with other spacing takes the slow path.
    return event_route(json.dumps(json.loads(payload), indent=1).encode())


def test_the_fast_route_agrees_with_parsing_the_whole_event() -> None:
    now = utcnow()
    events = [
        InboxChanged(inbox_id=None, at=now, changed_inbox_id=3),
        AgentUpdated(inbox_id=None, at=now, agent_id=1, name="A", role="agent",
                     availability="online", is_active=True, online=True, changes=[]),
        AgentUpdated(inbox_id=12, at=now, audience=[7, 1234], agent_id=1, name="A",
                     role="agent", availability="online", is_active=True, online=True,
                     changes=[]),
        NotificationCreated(inbox_id=5, at=now, audience=[9], notification=NotificationView(
            id=1, agent_id=9, kind="mention", conversation_id=2, message_id=None,
            by_agent_id=None, text="hi", read_at=None, created_at=now)),
    ]
    for event in events:
        payload = encode_event(event)
        assert event_route(payload) == _parsed(payload), payload
    assert event_route(encode_event(events[0])) == EventRoute(None, frozenset())
    assert event_route(encode_event(events[2])) == EventRoute(12, frozenset({7, 1234}))
    assert event_route(b"not json") == EventRoute(None, frozenset())
