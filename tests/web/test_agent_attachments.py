"""An agent's attachments: uploaded to a conversation, carried by a reply, fetched by the
api channel's receiver through an expiring signed link, and by the widget's own visitor only."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from config import Settings
from hub.security import file_link
from inbox.models import Attachment
from tests.helpers import (
    SUPPORT_SECRET,
    Stack,
    count_rows,
    eventually,
    message,
    running_stack,
)
from tests.web.test_widget import VisitorClient, _widget

LIMIT = 4096


@pytest.fixture
async def small_stack(settings: Settings) -> AsyncIterator[Stack]:
    """A stack whose attachment limit is a few kilobytes."""
    async with running_stack(settings.model_copy(update={"attachment_max_bytes": LIMIT})) as s:
        yield s


async def _conversation(stack: Stack, inbox: str = "support", ext: str = "m-1") -> int:
    answer = await stack.inbound(inbox, [message(ext, "Here is my question")])
    assert answer.status_code == 202, answer.text
    admin = await stack.login("admin")

    async def first() -> int | None:
        items = (await admin.http.get("/api/v1/conversations",
                                      params={"inbox_id": stack.ids[inbox]})).json()["items"]
        return items[0]["id"] if items else None

    found: int = await eventually(first)
    return found


async def _upload(agent: Any, conversation_id: int, data: bytes, *, name: str | None,
                  content_type: str = "application/pdf") -> Any:
    params = {"filename": name} if name is not None else {}
    return await agent.http.post(f"/api/v1/conversations/{conversation_id}/attachments",
                                 content=data, params=params,
                                 headers={"Content-Type": content_type})


async def test_upload_is_checked_bounded_and_stored(small_stack: Stack) -> None:
    stack = small_stack
    conversation_id = await _conversation(stack)
    alice, bob = await stack.login("alice"), await stack.login("bob")
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 4
    uploaded = await _upload(alice, conversation_id, pdf, name="Rechnung März.pdf")
    assert uploaded.status_code == 201, uploaded.text
    body = uploaded.json()
    assert body["filename"] == "Rechnung März.pdf" and body["size"] == len(pdf)
    assert body["content_type"] == "application/pdf" and len(body["id"]) == 32
    download = await alice.http.get(f"/api/v1/attachments/{body['id']}")
    assert download.content == pdf

    refused = [
        (await _upload(alice, conversation_id, pdf, name=None), 422),
        (await _upload(alice, conversation_id, pdf, name="../../etc/passwd"), 422),
        (await _upload(alice, conversation_id, pdf, name="a\x07b.pdf"), 422),
        (await _upload(alice, conversation_id, pdf, name=".."), 422),
        (await _upload(alice, conversation_id, b"", name="empty.pdf"), 422),
        (await _upload(alice, conversation_id, b"x" * (LIMIT + 1), name="big.bin"), 413),
        (await _upload(bob, conversation_id, pdf, name="x.pdf"), 404),  # not bob's inbox
        (await _upload(alice, 999_999, pdf, name="x.pdf"), 404),
    ]
    for answer, status in refused:
        assert answer.status_code == status, answer.text
    assert "filename" in refused[0][0].json()["error"]["message"]
    no_csrf = await alice.http.post(
        f"/api/v1/conversations/{conversation_id}/attachments", content=pdf,
        params={"filename": "x.pdf"}, headers={"X-CSRF-Token": ""})
    assert no_csrf.status_code == 403
    anonymous = await stack.client().post(
        f"/api/v1/conversations/{conversation_id}/attachments?filename=x.pdf", content=pdf)
    assert anonymous.status_code == 401
    assert await count_rows(stack, Attachment) == 1


async def test_reply_carries_files_to_the_api_receiver_by_signed_link(stack: Stack) -> None:
    conversation_id = await _conversation(stack)
    alice = await stack.login("alice")
    data = bytes(range(256)) * 20
    first = (await _upload(alice, conversation_id, data, name="log.bin",
                           content_type="application/octet-stream")).json()
    second = (await _upload(alice, conversation_id, b"\x89PNG...", name="shot.png",
                            content_type="image/png")).json()

    # A file of another inbox (sales) or an unknown id may not ride along.
    sales = await _conversation(stack, "sales", "s-1")
    admin = await stack.login("admin")
    foreign = (await _upload(admin, sales, b"secret", name="other.txt",
                             content_type="text/plain")).json()
    for ids in ([foreign["id"]], ["0" * 32], ["not-an-id"]):
        answer = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                       json={"text": "see file", "attachment_ids": ids})
        assert answer.status_code == 422, answer.text
        assert "attachment_ids" in answer.json()["error"]["message"]
    too_many = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                     json={"attachment_ids": [first["id"]] * 11})
    assert too_many.status_code == 422

    # Files only, no text.
    reply = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                  json={"attachment_ids": [first["id"], second["id"]]})
    assert reply.status_code == 201, reply.text
    view = reply.json()
    assert view["text"] == ""
    assert [a["filename"] for a in view["attachments"]] == ["log.bin", "shot.png"]
    await stack.receiver.wait(1)
    [sent] = stack.receiver.received
    assert [a["id"] for a in sent["attachments"]] == [first["id"], second["id"]]
    assert sent["attachments"][0]["size"] == len(data)

    # The receiver fetches the file without a session; a changed link gets nothing.
    anonymous = stack.client()
    link = sent["attachments"][0]["url"]
    assert link.startswith(stack.settings.base_url + "/api/v1/files/")
    fetched = await anonymous.get(link.removeprefix(stack.settings.base_url))
    assert fetched.status_code == 200 and fetched.content == data
    assert fetched.headers["x-content-type-options"] == "nosniff"
    path = link.removeprefix(stack.settings.base_url)
    forged = [
        path.replace(first["id"], second["id"]),
        path[:-1] + ("0" if path[-1] != "0" else "1"),
        path.split("?")[0],
        file_link("", SUPPORT_SECRET, first["id"], now=time.time() - 90_000),  # expired
        file_link("", "another-secret", first["id"]),
        file_link("", SUPPORT_SECRET, foreign["id"]),  # signed with the wrong inbox's key
    ]
    for url in forged:
        assert (await anonymous.get(url)).status_code == 404, url
    assert (await anonymous.get(file_link("", SUPPORT_SECRET, first["id"]))).status_code == 200


async def test_widget_visitor_downloads_only_files_of_their_own_thread(stack: Stack) -> None:
    widget = await _widget(stack)
    alice = await stack.login("alice")
    visitor = VisitorClient(stack, widget)
    await visitor.session(name="Vera")
    sent = await visitor.http.post(visitor.api + "/messages",
                                   json={"id": "hello-0001", "text": "Can I see the invoice?"})
    assert sent.status_code == 202

    async def conversation() -> int | None:
        items = (await alice.http.get("/api/v1/conversations",
                                      params={"inbox_id": widget["id"]})).json()["items"]
        return items[0]["id"] if items else None

    cid = await eventually(conversation)
    data = b"%PDF-1.4 invoice " + bytes(range(200))
    invoice = (await _upload(alice, cid, data, name="invoice.pdf")).json()
    unsent = (await _upload(alice, cid, b"draft", name="draft.txt",
                            content_type="text/plain")).json()
    reply = await alice.http.post(f"/api/v1/conversations/{cid}/messages",
                                  json={"text": "Here it is", "attachment_ids": [invoice["id"]]})
    assert reply.status_code == 201, reply.text

    async def shown() -> list[dict[str, Any]]:
        history = (await visitor.http.get(visitor.api + "/messages")).json()["messages"]
        return [m for m in history if m.get("attachments")]

    [with_file] = await eventually(shown)
    assert with_file["attachments"] == [{"id": invoice["id"], "filename": "invoice.pdf",
                                         "content_type": "application/pdf", "size": len(data)}]
    url = visitor.api + f"/attachments/{invoice['id']}"
    got = await visitor.http.get(url)
    assert got.status_code == 200 and got.content == data
    assert got.headers["access-control-allow-origin"] == "https://shop.example"
    assert got.headers["content-disposition"].startswith("attachment")
    # A file uploaded but never sent, another visitor, and no token: nothing.
    assert (await visitor.http.get(visitor.api + f"/attachments/{unsent['id']}")
            ).status_code == 404
    other = VisitorClient(stack, widget)
    await other.session(name="Otto")
    assert (await other.http.get(url)).status_code == 404
    del other.http.headers["Authorization"]
    assert (await other.http.get(url)).status_code == 401
