"""The chat widget's API and websocket, on both shapes: visitor <-> agent, and bad input."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from channels.webchat import (
    TokenRefused,
    Visitor,
    identifier_hash,
    is_open,
    issue_token,
    read_token,
)
from config import Settings
from tests.helpers import Stack, eventually, of_type, opened_settings, running_stack

SITE = "https://shop.example"


async def _widget(stack: Stack, **settings: Any) -> dict[str, Any]:
    admin = await stack.login("admin")
    created = await admin.http.post("/api/v1/inboxes", json={
        "name": "Shop", "channel": "webchat", "settings": settings})
    assert created.status_code == 201, created.text
    inbox_id = created.json()["id"]
    await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                         json={"agent_ids": [stack.ids["alice"]]})
    return {"id": inbox_id, **await opened_settings(stack, inbox_id)}


class VisitorClient:
    """A website visitor: the widget's HTTP calls and its websocket."""

    def __init__(self, stack: Stack, widget: dict[str, Any], origin: str = SITE) -> None:
        self.stack = stack
        self.widget = widget
        self.origin = origin
        self.http = stack.client()
        self.http.headers["Origin"] = origin
        self.token: str | None = None
        self.ws: ClientConnection | None = None
        self.frames: list[dict[str, Any]] = []

    @property
    def api(self) -> str:
        return f"/widget/api/{self.widget['public_token']}"

    async def session(self, **body: Any) -> httpx.Response:
        if self.token and "token" not in body:
            body["token"] = self.token
        response = await self.http.post(self.api + "/session", json=body)
        if response.status_code == 200:
            self.token = response.json()["token"]
            self.http.headers["Authorization"] = f"Bearer {self.token}"
        return response

    async def connect(self) -> dict[str, Any]:
        url = self.stack.base.replace("http", "ws", 1) + f"/widget/ws/{self.widget['public_token']}"
        self.ws = await connect(url, origin=self.origin, max_queue=None)  # type: ignore[arg-type]
        await self.ws.send(json.dumps({"type": "hello", "token": self.token}))
        return await self.next()

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        assert self.ws is not None
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame  # type: ignore[no-any-return]

    async def wait(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                frame = await self.next(deadline - time.monotonic())
            except TimeoutError:
                break
            if frame["type"] == kind:
                return frame
        raise AssertionError(f"no {kind} frame; got {self.frames}")

    async def say(self, client_id: str, text: str) -> dict[str, Any]:
        assert self.ws is not None
        await self.ws.send(json.dumps({"type": "message", "id": client_id, "text": text}))
        return await self.wait("ack")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def test_visitor_and_agent_talk_live_and_notes_never_reach_the_visitor(stack: Stack) -> None:
    widget = await _widget(stack)
    alice = await stack.login("alice")
    agent_ws = await alice.ws()
    visitor = VisitorClient(stack, widget)
    started = await visitor.session(name="Vera")
    assert started.status_code == 200
    assert started.json()["config"]["online"] is True
    assert started.headers["access-control-allow-origin"] == SITE
    ready = await visitor.connect()
    assert ready["type"] == "ready" and ready["messages"] == []

    ack = await visitor.say("hello-0001", "<script>alert('x')</script> hello")
    assert ack == {"type": "ack", "id": "hello-0001"}
    created = await agent_ws.wait_event(of_type("message.created", direction="in"))
    assert created["event"]["conversation"]["channel"] == "webchat"
    assert created["event"]["conversation"]["contact_name"] == "Vera"
    assert created["event"]["message"]["text"] == "<script>alert('x')</script> hello"
    cid = created["event"]["conversation"]["id"]
    own = await visitor.wait("message")
    assert own["message"]["client_id"] == "hello-0001" and own["message"]["from"] == "visitor"

    other = VisitorClient(stack, widget)
    await other.session()
    await other.connect()

    await alice.http.post(f"/api/v1/conversations/{cid}/messages",
                          json={"text": "internal: VIP", "kind": "note"})
    await alice.http.post(f"/api/v1/conversations/{cid}/typing", json={"mode": "note"})
    await alice.http.post(f"/api/v1/conversations/{cid}/typing", json={"mode": "reply"})
    assert (await visitor.wait("typing"))["typing"] is True
    reply = await alice.http.post(f"/api/v1/conversations/{cid}/messages",
                                  json={"text": "Hi Vera, how can I help?"})
    assert reply.status_code == 201
    got = await visitor.wait("message")
    # The visitor sees who answered (a first name), never an agent id or anything internal.
    assert got["message"] == {"id": reply.json()["id"], "from": "agent", "agent": "Alice",
                              "text": "Hi Vera, how can I help?", "at": got["message"]["at"]}
    assert all("VIP" not in json.dumps(f) for f in visitor.frames)
    assert all(f["type"] not in ("message", "typing") for f in other.frames)

    # The thread survives: a new page load with the same token gets it back.
    again = VisitorClient(stack, widget)
    again.token = visitor.token
    resumed = await again.session()
    texts = [m["text"] for m in resumed.json()["messages"]]
    assert texts == ["<script>alert('x')</script> hello", "Hi Vera, how can I help?"]
    history = (await visitor.http.get(visitor.api + "/messages")).json()["messages"]
    assert [m["from"] for m in history] == ["visitor", "agent"]
    assert history[1]["agent"] == "Alice" and "agent_id" not in history[1]

    # The visitor typing shows to agents.
    assert visitor.ws is not None
    await visitor.ws.send(json.dumps({"type": "typing", "typing": True}))
    typing = await agent_ws.wait_event(
        lambda e: e["type"] == "conversation.typing" and e["by_agent_id"] is None)
    assert typing["event"]["conversation_id"] == cid and typing["event"]["typing"] is True
    for client in (visitor, other):
        await client.close()
    await agent_ws.close()


async def test_message_sent_twice_over_both_paths_is_stored_once(stack: Stack) -> None:
    widget = await _widget(stack)
    admin = await stack.login("admin")
    visitor = VisitorClient(stack, widget)
    await visitor.session()
    first = await visitor.http.post(visitor.api + "/messages",
                                    json={"id": "queued-0001", "text": "sent while offline"})
    assert first.status_code == 202
    await visitor.connect()
    await visitor.say("queued-0001", "sent while offline")
    await visitor.http.post(visitor.api + "/messages",
                            json={"id": "queued-0001", "text": "sent while offline"})

    async def stored() -> list[Any]:
        items = (await admin.http.get(
            f"/api/v1/conversations?inbox_id={widget['id']}")).json()["items"]
        if not items:
            return []
        page = (await admin.http.get(f"/api/v1/conversations/{items[0]['id']}/messages")).json()
        return page["items"]

    await eventually(stored)
    await asyncio.sleep(0.5)
    assert [m["text"] for m in await stored()] == ["sent while offline"]
    await visitor.close()


async def test_bad_visitor_input_is_refused_clearly(stack: Stack) -> None:
    widget = await _widget(stack)
    visitor = VisitorClient(stack, widget)
    await visitor.session()
    api = visitor.api + "/messages"
    too_long = await visitor.http.post(api, json={"id": "long-0001", "text": "x" * 5001})
    assert too_long.status_code == 422 and "5000" in too_long.json()["error"]["message"]
    empty = await visitor.http.post(api, json={"id": "empty-001", "text": "  "})
    assert empty.status_code == 422
    bad_id = await visitor.http.post(api, json={"id": "../x", "text": "hi"})
    assert bad_id.status_code == 422
    not_json = await visitor.http.post(api, content=b"{", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 400
    huge = await visitor.http.post(api, content=b"x" * 20_000)
    assert huge.status_code == 413
    deep = await visitor.http.post(api, content=b"[" * 5000 + b"]" * 5000)
    assert deep.status_code == 400 and deep.json()["error"]["code"] == "invalid_json"
    nul = await visitor.http.post(api, json={"id": "nul-0001", "text": "a\u0000b"})
    assert nul.status_code == 422 and "NUL" in nul.json()["error"]["message"]

    forged = stack.client()
    forged.headers.update({"Origin": SITE, "Authorization": f"Bearer {visitor.token}x"})
    assert (await forged.get(api)).status_code == 401
    old = issue_token(widget["secret"], Visitor(inbox_id=widget["id"], visitor_id="v1"),
                      now=time.time() - 200 * 86400)
    forged.headers["Authorization"] = f"Bearer {old}"
    expired = await forged.get(api)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    assert (await stack.client().get(api)).status_code == 401

    codes = []
    for n in range(15):
        answer = await visitor.http.post(api, json={"id": f"flood-{n:04d}", "text": f"{n}"})
        codes.append(answer.status_code)
    assert codes[:10] == [202] * 10 and 429 in codes
    assert (await stack.client().post("/widget/api/nope/session", json={})).status_code == 404


async def test_enforced_identity_verification(stack: Stack) -> None:
    widget = await _widget(stack, enforce_identity=True)
    good = identifier_hash(widget["secret"], "user-42")
    laptop = VisitorClient(stack, widget)
    refused = await laptop.session(identifier="user-42", identifier_hash="0" * 64)
    assert refused.status_code == 403
    assert "identifier_hash" in refused.json()["error"]["message"]
    assert (await laptop.session(identifier="user-42", identifier_hash=good)).status_code == 200
    await laptop.connect()
    await laptop.say("verified-01", "order question")
    await laptop.wait("message")

    phone = VisitorClient(stack, widget)
    resumed = await phone.session(identifier="user-42", identifier_hash=good)
    assert [m["text"] for m in resumed.json()["messages"]] == ["order question"]

    stranger = VisitorClient(stack, widget)
    anonymous = await stranger.session()
    assert anonymous.json()["messages"] == []
    # Switching the identified user switches the stream, even with the same stored token.
    other_hash = identifier_hash(widget["secret"], "user-77")
    switched = await laptop.session(identifier="user-77", identifier_hash=other_hash)
    assert switched.json()["messages"] == []
    await laptop.close()


async def test_foreign_website_origin_is_refused(stack: Stack) -> None:
    widget = await _widget(stack, allowed_origins=[SITE])
    evil = VisitorClient(stack, widget, origin="https://evil.example")
    refused = await evil.session()
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    friend = VisitorClient(stack, widget)
    assert (await friend.session()).status_code == 200
    evil.token = friend.token
    try:
        await evil.connect()
        raise AssertionError("a foreign origin opened the widget websocket")
    except InvalidStatus as exc:
        assert exc.response.status_code == 403


async def test_offline_visitor_leaves_an_email_that_joins_the_contact(stack: Stack) -> None:
    widget = await _widget(stack, away_message="Back at 9.")
    visitor = VisitorClient(stack, widget)
    started = await visitor.session()
    config = started.json()["config"]
    assert config["online"] is False and config["away_message"] == "Back at 9."
    early = await visitor.http.post(visitor.api + "/email", json={"email": "v@example.com"})
    assert early.status_code == 409
    await visitor.connect()
    await visitor.say("offline-01", "anyone there?")
    await visitor.wait("message")
    bad = await visitor.http.post(visitor.api + "/email", json={"email": "not-an-email"})
    assert bad.status_code == 422
    saved = await visitor.http.post(visitor.api + "/email", json={"email": "Vera@Example.com"})
    assert saved.status_code == 200 and saved.json() == {"email": "vera@example.com"}
    admin = await stack.login("admin")
    conversation = (await admin.http.get(
        f"/api/v1/conversations?inbox_id={widget['id']}")).json()["items"][0]
    contact = (await admin.http.get(f"/api/v1/contacts/{conversation['contact_id']}")).json()
    assert contact["email"] == "vera@example.com"
    assert {"kind": "email", "value": "vera@example.com", "display_name": None} in contact[
        "identities"]
    await visitor.close()


def test_tokens_and_business_hours() -> None:
    visitor = Visitor(inbox_id=3, visitor_id="abc", identifier="u1", name="Ann")
    token = issue_token("s3cret", visitor)
    assert read_token("s3cret", token, inbox_id=3) == visitor
    for bad in (token + "x", token.replace(".", ".A", 1), "x.y", ""):
        try:
            read_token("s3cret", bad, inbox_id=3)
            raise AssertionError(f"accepted {bad!r}")
        except TokenRefused:
            pass
    try:
        read_token("s3cret", token, inbox_id=4)
        raise AssertionError("token of another inbox accepted")
    except TokenRefused as exc:
        assert "another inbox" in str(exc)
    hours = {"business_hours": {"timezone": "Europe/Paris", "days": {"mon": "09:00-17:00"}}}
    monday_10_paris = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Paris
    monday_18_paris = datetime(2026, 11, 23, 17, 30, tzinfo=UTC)
    tuesday = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert is_open(hours, monday_10_paris) is True
    assert is_open(hours, monday_18_paris) is False
    assert is_open(hours, tuesday) is False
    assert is_open({}, tuesday) is True


async def test_widget_settings_are_validated(stack: Stack) -> None:
    admin = await stack.login("admin")
    bad = await admin.http.post("/api/v1/inboxes", json={
        "name": "Shop", "channel": "webchat",
        "settings": {"accent_color": "red", "allowed_origins": "shop.example",
                     "business_hours": {"timezone": "Mars/Olympus", "days": {"mo": "9-5"}}}})
    assert bad.status_code == 422
    message = bad.json()["error"]["message"]
    for part in ("accent_color", "allowed_origins", "Mars/Olympus", "'mo'"):
        assert part in message


async def test_the_visitors_browser_language_routes_by_rule(stack: Stack) -> None:
    widget = await _widget(stack)
    admin = await stack.login("admin")
    bob = await stack.login("bob")
    team = await admin.http.post("/api/v1/teams", json={
        "name": "German desk", "member_ids": [stack.ids["bob"]], "inbox_ids": [widget["id"]]})
    assert team.status_code == 201, team.text
    rule = await admin.http.post("/api/v1/assignment-rules", json={
        "name": "German speakers", "inbox_id": widget["id"], "team_id": team.json()["id"],
        "conditions": [{"field": "language", "op": "in", "value": ["de"]}]})
    assert rule.status_code == 201, rule.text
    watch = await admin.ws()
    bob_ws = await bob.ws()  # online: the team's member can take it

    async def visitor_writes(client_id: str, text: str, language: str) -> dict[str, Any]:
        visitor = VisitorClient(stack, widget)
        assert (await visitor.session()).status_code == 200
        await visitor.connect()
        assert visitor.ws is not None
        await visitor.ws.send(json.dumps(
            {"type": "message", "id": client_id, "text": text, "language": language}))
        await visitor.wait("ack")
        await visitor.close()
        event = await watch.wait_event(of_type("message.created", text=text))
        return event["event"]["conversation"]  # type: ignore[no-any-return]

    german = await visitor_writes("client-de-1", "Wo ist mein Paket?", "de-AT")
    assert (german["team_id"], german["assignee_id"]) == (team.json()["id"], stack.ids["bob"])
    english = await visitor_writes("client-en-1", "Where is my parcel?", "en-US")
    assert english["team_id"] is None
    # Not a language tag: ignored, the message is still taken.
    odd = await visitor_writes("client-xx-1", "Hello?", "<script>")
    assert odd["team_id"] is None
    await watch.close()
    await bob_ws.close()


async def test_one_address_cannot_flood_sessions_or_hold_every_socket(settings: Settings) -> None:
    limited = settings.model_copy(update={"widget_sessions_per_minute": 5,
                                          "widget_sockets_per_address": 3})
    async with running_stack(limited) as stack:
        widget = await _widget(stack)
        visitors = [VisitorClient(stack, widget) for _ in range(6)]
        answers = [(await v.session()).status_code for v in visitors]
        assert answers == [200] * 5 + [429]
        refused = await visitors[5].http.post(visitors[5].api + "/session", json={})
        assert refused.json()["error"]["code"] == "slow_down"
        assert 1 <= int(refused.headers["retry-after"]) <= 12
        # Resuming a session is not starting one: a returning visitor is never refused.
        assert (await visitors[0].session()).status_code == 200

        for visitor in visitors[:3]:
            assert (await visitor.connect())["type"] == "ready"
        with pytest.raises(InvalidStatus):
            await visitors[3].connect()
        await visitors[0].ws.close()  # type: ignore[union-attr]

        async def connects() -> bool:
            try:
                return (await visitors[3].connect())["type"] == "ready"
            except InvalidStatus:
                return False

        assert await eventually(connects, timeout=5)
        for visitor in visitors[1:4]:
            await visitor.close()


async def test_the_contact_panel_knows_where_the_visitor_is(stack: Stack) -> None:
    widget = await _widget(stack)
    visitor = VisitorClient(stack, widget)
    visitor.http.headers["User-Agent"] = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36")
    first = await visitor.session(visit={
        "url": "https://shop.example/shoes?size=42#reviews", "title": "Shoes",
        "referrer": "https://www.example.org/search?q=shoes", "language": "de-CH",
        "time_zone": "Europe/Zurich"})
    assert first.status_code == 200
    await visitor.connect()
    await visitor.say("visit-0001", "Do you have these in blue?")
    alice = await stack.login("alice")

    async def contact_id() -> int | None:
        items = (await alice.http.get("/api/v1/conversations")).json()["items"]
        return items[0]["contact_id"] if items else None

    contact = await eventually(contact_id)
    # Hostile or odd values are left out, not stored: the chat goes on all the same.
    moved = await visitor.session(visit={
        "url": "javascript:alert(1)", "title": "Checkout\u0000 " + "x" * 400,
        "referrer": "file:///etc/passwd", "language": "<script>", "time_zone": "Mars/Olympus"})
    assert moved.status_code == 200
    visits = (await alice.http.get(f"/api/v1/contacts/{contact}")).json()["visits"]
    assert len(visits) == 1
    visit = visits[0]
    assert {k: visit[k] for k in ("page_url", "referrer", "language", "time_zone", "browser",
                                  "os", "verified")} == {
        "page_url": "https://shop.example/shoes?size=42",
        "referrer": "https://www.example.org/search?q=shoes", "language": "de-CH",
        "time_zone": "Europe/Zurich", "browser": "Chrome 131", "os": "Windows 10",
        "verified": False}
    assert visit["page_title"] == "Checkout " + "x" * 291  # the new title, NUL gone, bounded
    assert visit["first_seen_at"] <= visit["last_seen_at"]
    # Another inbox's agent sees nothing of it; the admin does.
    bob = await stack.login("bob")
    assert (await bob.http.get(f"/api/v1/contacts/{contact}")).status_code == 404
    await visitor.close()

    # A user the site vouches for is shown as verified.
    member = VisitorClient(stack, widget)
    await member.session(identifier="user-9", visit={"url": "https://shop.example/account"},
                         identifier_hash=identifier_hash(widget["secret"], "user-9"))
    await member.connect()
    await member.say("visit-0002", "Where is my parcel?")

    async def verified() -> bool:
        items = (await alice.http.get("/api/v1/conversations")).json()["items"]
        for item in items:
            found = (await alice.http.get(f"/api/v1/contacts/{item['contact_id']}")).json()
            if found["visits"] and found["visits"][0]["verified"]:
                return found["visits"][0]["page_url"] == "https://shop.example/account"
        return False

    await eventually(verified)
    await member.close()
