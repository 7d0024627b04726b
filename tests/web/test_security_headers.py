"""Every API answer says what it is and that it must not be cached; a 405 says what is allowed."""

from __future__ import annotations

from tests.helpers import Stack


async def test_json_answers_are_not_sniffed_or_cached(stack: Stack) -> None:
    alice = await stack.login("alice")
    for answer in (await alice.http.get("/api/v1/me"),
                   await alice.http.get("/api/v1/conversations/999999"),
                   await stack.client().get("/api/v1/me")):
        assert answer.headers["content-type"] == "application/json", answer.status_code
        assert answer.headers["x-content-type-options"] == "nosniff", answer.status_code
        assert answer.headers["cache-control"] == "no-store", answer.status_code


async def test_a_wrong_method_answers_405_with_allow(stack: Stack) -> None:
    alice = await stack.login("alice")
    answer = await alice.http.delete("/api/v1/me")
    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "method_not_allowed"
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
