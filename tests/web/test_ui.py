"""The agent inbox pages over plain HTTP: login, CSRF on every form, logout, password change."""

from __future__ import annotations

import re

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.helpers import PASSWORD, Stack

NEW_PASSWORD = "a brand new passphrase"


def _hidden_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _meta_token(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def _form_login(stack: Stack, email: str, password: str = PASSWORD) -> httpx.AsyncClient:
    client = stack.client()
    page = await client.get("/login")
    response = await client.post("/login", data={
        "csrf_token": _hidden_token(page.text), "email": email, "password": password,
    })
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    return client


async def test_pages_need_a_session_and_carry_security_headers(stack: Stack) -> None:
    client = stack.client()
    home = await client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/login"
    login = await client.get("/login")
    assert login.status_code == 200
    csp = login.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert login.headers["x-frame-options"] == "DENY"
    assert login.headers["referrer-policy"] == "same-origin"
    cookie = login.headers["set-cookie"]
    assert "switchboard_login_csrf=" in cookie and "samesite=strict" in cookie.lower()
    assert "httponly" in cookie.lower()
    assert (await client.get("/settings/password")).headers["location"] == "/login"
    script = await client.get("/static/js/main.js")
    assert script.status_code == 200 and "textContent" in script.text
    assert script.headers["cache-control"] == "no-cache"


async def test_login_form_needs_its_csrf_token(stack: Stack) -> None:
    client = stack.client()
    fields = {"email": "alice@example.com", "password": PASSWORD}
    missing = await client.post("/login", data=fields)
    assert missing.status_code == 403
    assert "switchboard_session" not in missing.cookies
    page = await client.get("/login")
    forged = await client.post("/login", data={**fields, "csrf_token": "forged-token"})
    assert forged.status_code == 403
    other = stack.client()  # a token from another browser's form, without its cookie
    stolen = await other.post("/login", data={**fields, "csrf_token": _hidden_token(page.text)})
    assert stolen.status_code == 403
    assert "switchboard_session" not in client.cookies
    assert "switchboard_session" not in other.cookies


async def test_wrong_password_shows_an_error_and_keeps_the_email(stack: Stack) -> None:
    client = stack.client()
    page = await client.get("/login")
    response = await client.post("/login", data={
        "csrf_token": _hidden_token(page.text), "email": "alice@example.com",
        "password": "not the password",
    })
    assert response.status_code == 401
    assert "Wrong email or password." in response.text
    assert 'value="alice@example.com"' in response.text
    assert "switchboard_session" not in response.cookies
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_login_page_escapes_what_was_typed(stack: Stack) -> None:
    client = stack.client()
    page = await client.get("/login")
    response = await client.post("/login", data={
        "csrf_token": _hidden_token(page.text), "email": '"><script>alert(1)</script>',
        "password": "x",
    })
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;" in response.text


async def test_form_login_opens_the_inbox_and_logout_ends_the_session(stack: Stack) -> None:
    client = await _form_login(stack, "alice@example.com")
    home = await client.get("/")
    assert home.status_code == 200
    assert "script-src 'self'" in home.headers["content-security-policy"]
    csrf = _meta_token(home.text)
    me = await client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["email"] == "alice@example.com"
    assert (await client.get("/login")).headers["location"] == "/"

    # The page's token is the session's: it authorises API calls made with the cookie.
    ok = await client.put("/api/v1/me/availability", json={"availability": "away"},
                          headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200

    refused = await client.post("/logout", data={})
    assert refused.status_code == 403
    assert (await client.get("/api/v1/me")).status_code == 200
    cookie = client.cookies["switchboard_session"]
    out = await client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (await client.get("/api/v1/me")).status_code == 401
    replayed = stack.client()
    replayed.cookies.set("switchboard_session", cookie)
    assert (await replayed.get("/api/v1/me")).status_code == 401
    assert (await replayed.get("/")).headers["location"] == "/login"


async def test_password_change_ends_every_other_session_at_once(stack: Stack) -> None:
    here = await _form_login(stack, "alice@example.com")
    elsewhere = await stack.login("alice")  # another browser, through the JSON API
    socket = await elsewhere.ws()
    await socket.close()
    page = await here.get("/settings/password")
    assert page.status_code == 200 and "alice@example.com" in page.text
    csrf = _hidden_token(page.text)

    no_token = await here.post("/settings/password", data={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD,
    })
    assert no_token.status_code == 403
    wrong = await here.post("/settings/password", data={
        "csrf_token": csrf, "current_password": "nope nope nope", "new_password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD,
    })
    assert wrong.status_code == 422 and "current password is wrong" in wrong.text
    short = await here.post("/settings/password", data={
        "csrf_token": csrf, "current_password": PASSWORD, "new_password": "short",
        "confirm_password": "short",
    })
    assert short.status_code == 422 and "at least 8 characters" in short.text
    assert (await elsewhere.http.get("/api/v1/me")).status_code == 200

    done = await here.post("/settings/password", data={
        "csrf_token": csrf, "current_password": PASSWORD, "new_password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD,
    })
    assert done.status_code == 200 and "password was changed" in done.text
    assert (await here.get("/api/v1/me")).status_code == 200  # this session stays
    assert (await elsewhere.http.get("/api/v1/me")).status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        await elsewhere.ws()
    assert refused.value.response.status_code == 403

    old = await stack.client().post("/api/v1/auth/login",
                                    json={"email": "alice@example.com", "password": PASSWORD})
    assert old.status_code == 401
    await _form_login(stack, "alice@example.com", NEW_PASSWORD)


async def test_password_change_over_the_api(stack: Stack) -> None:
    alice = await stack.login("alice")
    other = await stack.login("alice")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    token = alice.http.headers.pop("X-CSRF-Token")
    assert (await alice.http.post("/api/v1/me/password", json=body)).status_code == 403
    alice.http.headers["X-CSRF-Token"] = token
    wrong = await alice.http.post("/api/v1/me/password",
                                  json={**body, "current_password": "wrong wrong"})
    assert wrong.status_code == 422
    assert (await alice.http.post("/api/v1/me/password", json=body)).status_code == 204
    assert (await alice.http.get("/api/v1/me")).status_code == 200
    assert (await other.http.get("/api/v1/me")).status_code == 401


async def test_agents_directory_shows_colleagues_only(stack: Stack) -> None:
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    admin = await stack.login("admin")

    async def names(who) -> list[str]:  # type: ignore[no-untyped-def]
        response = await who.http.get("/api/v1/agents")
        assert response.status_code == 200
        return [agent["name"] for agent in response.json()]

    assert await names(alice) == ["Admin", "Alice"]
    assert await names(bob) == ["Admin", "Bob"]
    assert await names(admin) == ["Admin", "Alice", "Bob"]
    assert (await stack.client().get("/api/v1/agents")).status_code == 401
