"""The fan-out reads an event's routing off its front, and offers a website visitor's
listener only its own thread's messages and typing, whatever else the inbox carries."""

from __future__ import annotations

from typing import Any

from hub.events import (
    ConversationTyping,
    ConversationView,
    MessageCreated,
    MessageView,
    encode_event,
)
from hub.realtime import _ROUTE_PREFIX, EventRoute, Fanout, event_route
from hub.types import utcnow

INBOX = 4


def _created(conversation_id: int, text: str, external_id: str | None,
             inbox_id: int = INBOX, caused_by: list[int] | None = None) -> bytes:
    now = utcnow()
    message = MessageView(
        id=conversation_id * 10, conversation_id=conversation_id, inbox_id=inbox_id,
        direction="in", kind="message", text=text, html=None, external_id=external_id,
        contact_id=1, agent_id=None, status=None, status_reason=None, attachments=[],
        accepted_at=now, created_at=now)
    conversation = ConversationView(
        id=conversation_id, inbox_id=inbox_id, channel="webchat", contact_id=1,
        contact_name=None, status="open", assignee_id=None, team_id=None, subject=None,
        last_message_preview=text, unread_count=1, snoozed_until=None, last_activity_at=now,
        created_at=now)
    return encode_event(MessageCreated(inbox_id=inbox_id, at=now, message=message,
                                       conversation=conversation, caused_by=caused_by or []))


def _typing(conversation_id: int) -> bytes:
    return encode_event(ConversationTyping(inbox_id=INBOX, at=utcnow(),
                                           conversation_id=conversation_id, contact_id=1,
                                           by_agent_id=7, typing=True))


def test_routing_is_read_off_the_front_of_every_event() -> None:
    for payload in (_created(1, "hi", None), _typing(1), _created(1, "x", None, caused_by=[3])):
        assert _ROUTE_PREFIX.match(payload) is not None, payload[:160]
        assert event_route(payload) == EventRoute(INBOX, None)


def _drain(listener: Any) -> list[bytes]:
    out = []
    while not listener.queue.empty():
        out.append(listener.queue.get_nowait()[1])
    return out


def test_a_visitor_hears_only_their_thread() -> None:
    fanout = Fanout(bus=None)  # type: ignore[arg-type]  # never started: offered by hand
    ada = fanout.listen_thread(INBOX, "ada-visitor", 11)
    ben = fanout.listen_thread(INBOX, "ben-visitor", None)  # no conversation yet
    agent = fanout.listen(lambda inbox: inbox == INBOX, agent_id=7)
    # A quote in a text is escaped: it cannot pose as the event's own fields.
    tricky = _created(12, 'says "conversation_id":11 and "external_id":"widget:ada-visitor:"',
                      None)
    events = [
        _created(11, "Ada's question", "widget:ada-visitor:c1"),
        _typing(11),
        _typing(12),
        tricky,
        _created(13, "Ben's first message", "widget:ben-visitor:c1"),
        _created(11, "same visitor id, another inbox", "widget:ada-visitor:c2", inbox_id=5),
    ]
    for n, payload in enumerate(events):
        event = (f"{n}-0", payload)
        route = event_route(payload)
        for listener in (agent,):
            if route.reaches(listener.agent_id, listener.accepts):
                listener.offer(event)
        fanout._offer_threads(event, route.inbox_id)
    assert _drain(ada) == events[:2]
    assert _drain(ben) == [events[4]]  # their own message, found by the sender
    assert _drain(agent) == events[:5]
    # Following the conversation their message started, Ben hears its typing.
    fanout.follow(ben, 13)
    fanout._offer_threads(("9-0", _typing(13)), INBOX)
    assert len(_drain(ben)) == 1 and _drain(ada) == []
    assert fanout.listener_count == 3
    for listener in (ada, ben, agent):
        fanout.unlisten(listener)
    assert fanout.listener_count == 0
    assert fanout._by_conversation == {} and fanout._by_visitor == {}
