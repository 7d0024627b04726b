"""Login rate limiting (API and form) and optional TOTP two-factor authentication."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

import httpx
import pyotp
import pytest

from hub.types import utcnow
from inbox.db import Database
from inbox.login_limits import ADDRESS_LIMIT, EMAIL_LIMIT
from inbox.models import LoginAttempt
from tests.helpers import PASSWORD, Stack, count_rows


async def _login(client: httpx.AsyncClient, email: str, password: str = PASSWORD,
                 **extra: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login",
                             json={"email": email, "password": password, **extra})


async def test_failed_logins_of_one_email_are_limited(stack: Stack) -> None:
    client = stack.client()
    for _ in range(EMAIL_LIMIT):
        assert (await _login(client, "alice@example.com", "guess")).status_code == 401
    # Now even the right password is refused (else the limit would tell it apart).
    limited = await _login(client, "ALICE@example.com")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "try again in 15 minutes" in limited.json()["error"]["message"]
    assert 800 < int(limited.headers["retry-after"]) <= 900
    assert "switchboard_session" not in limited.cookies
    # Another agent from the same address is not locked out.
    assert (await _login(client, "bob@example.com")).status_code == 200
    # Refused attempts are not counted again: the table holds the failures only.
    assert await count_rows(stack, LoginAttempt) == 2 * EMAIL_LIMIT


async def test_an_admin_sees_a_locked_account_and_unlocks_it(stack: Stack) -> None:
    client = stack.client()
    for _ in range(EMAIL_LIMIT):
        await _login(client, "alice@example.com", "guess")
    assert (await _login(client, "alice@example.com")).status_code == 429
    admin = await stack.login("admin")
    agents = {a["id"]: a for a in (await admin.http.get("/api/v1/admin/agents")).json()}
    locked = agents[stack.ids["alice"]]["locked_until"]
    assert locked is not None and agents[stack.ids["bob"]]["locked_until"] is None
    minutes = (datetime.fromisoformat(locked) - utcnow()).total_seconds() / 60
    assert 13 < minutes <= 15
    # The admin page says so, with a button; an agent may not unlock anyone.
    page = await admin.http.get(f"/admin/agents/{stack.ids['alice']}")
    assert 'id="unlock"' in page.text and "Locked out" in page.text
    bob = await stack.login("bob")
    assert (await bob.http.post(f"/api/v1/admin/agents/{stack.ids['alice']}/unlock")
            ).status_code == 403
    unlocked = await admin.http.post(f"/api/v1/admin/agents/{stack.ids['alice']}/unlock")
    assert unlocked.status_code == 200 and unlocked.json()["locked_until"] is None
    assert (await _login(stack.client(), "alice@example.com")).status_code == 200
    assert (await admin.http.post("/api/v1/admin/agents/999999/unlock")).status_code == 404


async def test_a_success_resets_the_email_count_but_not_the_address_count(
    stack: Stack,
) -> None:
    client = stack.client()
    for _ in range(EMAIL_LIMIT - 1):
        await _login(client, "alice@example.com", "guess")
    assert (await _login(client, "alice@example.com")).status_code == 200
    for _ in range(EMAIL_LIMIT - 1):
        assert (await _login(client, "alice@example.com", "guess")).status_code == 401
    assert (await _login(client, "alice@example.com")).status_code == 200

    # The address count went on through those successes: guessing at other emails while
    # logging into one's own account in between does not get past the address limit.
    failed = 2 * (EMAIL_LIMIT - 1)
    n = 0
    while failed < ADDRESS_LIMIT:
        assert (await _login(client, f"nobody{n // 4}@example.com", "guess")).status_code == 401
        failed += 1
        n += 1
        if n % 4 == 0 and failed < ADDRESS_LIMIT:
            assert (await _login(client, "bob@example.com")).status_code == 200
    limited = await _login(client, "bob@example.com")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


async def test_old_attempts_are_cleaned_up(stack: Stack) -> None:
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            session.add(LoginAttempt(key="email:old", at=utcnow() - timedelta(hours=1)))
    finally:
        await db.close()
    assert await count_rows(stack, LoginAttempt) == 1
    await _login(stack.client(), "alice@example.com", "guess")
    assert await count_rows(stack, LoginAttempt, LoginAttempt.key == "email:old") == 0


async def test_the_login_form_is_limited_too_with_a_clear_message(stack: Stack) -> None:
    client = stack.client()

    async def submit(password: str) -> httpx.Response:
        page = await client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        return await client.post("/login", data={
            "csrf_token": token.group(1), "email": "alice@example.com", "password": password})

    for _ in range(EMAIL_LIMIT):
        assert (await submit("guess")).status_code == 401
    limited = await submit(PASSWORD)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert ("Too many failed logins; try again in 15 minutes, or ask an admin to unlock "
            "your account." in limited.text)
    assert "switchboard_session" not in client.cookies


async def test_two_factor_login_with_fresh_codes_only(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="switchboard")
    alice = await stack.login("alice")
    setup = await alice.http.post("/api/v1/me/totp/setup")
    assert setup.status_code == 200
    secret = setup.json()["secret"]
    uri = setup.json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/Switchboard:alice%40example.com?secret=" + secret)
    totp = pyotp.TOTP(secret)
    # Not on until confirmed with a right code.
    assert (await _login(stack.client(), "alice@example.com")).status_code == 200
    now = utcnow()
    valid = {totp.at(now + timedelta(seconds=s)) for s in (-30, 0, 30)}
    wrong_code = next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)
    wrong = await alice.http.post("/api/v1/me/totp/enable", json={"code": wrong_code})
    assert wrong.status_code == 422 and "not right" in wrong.json()["error"]["message"]
    assert (await alice.http.post("/api/v1/me/totp/enable",
                                  json={"code": totp.at(now)})).status_code == 204
    assert (await alice.http.post("/api/v1/me/totp/setup")).status_code == 422

    client = stack.client()
    missing = await _login(client, "alice@example.com")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "totp_required"
    wrong_password = await _login(client, "alice@example.com", "guess", totp_code="123456")
    assert wrong_password.json()["error"]["code"] == "invalid_credentials"
    # The code that turned it on was used up: replaying it within its window is refused.
    replay = await _login(client, "alice@example.com", totp_code=totp.at(now))
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "invalid_totp"
    fresh = totp.at(now + timedelta(seconds=30))  # the next step (clock drift allowance)
    ok = await _login(client, "alice@example.com", totp_code=fresh)
    assert ok.status_code == 200 and "switchboard_session" in client.cookies
    again = await _login(stack.client(), "alice@example.com", totp_code=fresh)
    assert again.json()["error"]["code"] == "invalid_totp"
    agents = (await (await stack.login("admin")).http.get("/api/v1/admin/agents")).json()
    assert {a["id"]: a["totp_enabled"] for a in agents}[stack.ids["alice"]] is True

    assert (await alice.http.post("/api/v1/me/totp/disable",
                                  json={"password": "guess"})).status_code == 422
    assert (await alice.http.post("/api/v1/me/totp/disable",
                                  json={"password": PASSWORD})).status_code == 204
    assert (await _login(stack.client(), "alice@example.com")).status_code == 200
    assert secret not in caplog.text


async def test_the_login_form_asks_for_the_code_in_a_second_step(stack: Stack) -> None:
    alice = await stack.login("alice")
    secret = (await alice.http.post("/api/v1/me/totp/setup")).json()["secret"]
    totp = pyotp.TOTP(secret)
    now = utcnow()
    await alice.http.post("/api/v1/me/totp/enable", json={"code": totp.at(now)})

    client = stack.client()
    page = await client.get("/login")
    assert 'name="totp_code"' not in page.text

    def token(html: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert found is not None
        return found.group(1)

    step = await client.post("/login", data={"csrf_token": token(page.text),
                                             "email": "alice@example.com", "password": PASSWORD})
    assert step.status_code == 401 and 'name="totp_code"' in step.text
    assert "Enter the code from your authenticator app." in step.text
    assert PASSWORD not in step.text  # the password is never echoed back
    done = await client.post("/login", data={
        "csrf_token": token(step.text), "email": "alice@example.com", "password": PASSWORD,
        "totp_code": totp.at(now + timedelta(seconds=30))})
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert (await client.get("/api/v1/me")).json()["email"] == "alice@example.com"


async def test_no_page_of_another_site_can_log_a_browser_in(stack: Stack) -> None:
    """Login CSRF: a form on any site can post text/plain (no preflight), and fetch can post
    JSON with the visitor's browser. Neither may log the visitor into someone's account."""
    client = stack.client()
    body = b'{"email": "alice@example.com", "password": "' + PASSWORD.encode() + b'"}'
    # What <form enctype="text/plain"> on evil.example sends: refused by its Origin, and
    # without one (an old browser, a proxy stripping it) by its type. No session either way.
    form = await client.post("/api/v1/auth/login", content=body, headers={
        "Content-Type": "text/plain", "Origin": "https://evil.example"})
    assert form.status_code == 403
    assert "switchboard_session" not in form.cookies
    plain = await client.post("/api/v1/auth/login", content=body,
                              headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert plain.json()["error"]["code"] == "unsupported_media_type"
    assert "switchboard_session" not in plain.cookies
    # JSON from another site's script: refused by its Origin before any handler runs.
    foreign = await client.post("/api/v1/auth/login", content=body, headers={
        "Content-Type": "application/json", "Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert foreign.json()["error"]["code"] == "forbidden_origin"
    assert "switchboard_session" not in foreign.cookies
    for origin in ("null", "http://localhost.evil.example"):
        refused = await client.post("/api/v1/auth/login", content=body, headers={
            "Content-Type": "application/json", "Origin": origin})
        assert refused.status_code == 403, origin
    # Invitation acceptance is held to the same: nothing is looked up or created.
    invite = await client.post("/api/v1/auth/invitations/accept", content=b'{"token": "t"}',
                               headers={"Content-Type": "text/plain"})
    assert invite.status_code == 415
    invite = await client.post("/api/v1/auth/invitations/accept", json={"token": "t" * 20,
                               "password": "x" * 12}, headers={"Origin": "https://evil.example"})
    assert invite.status_code == 403
    # The app's own page (same origin) and scripts (no Origin) log in as before.
    own = await client.post("/api/v1/auth/login", content=body, headers={
        "Content-Type": "application/json; charset=utf-8", "Origin": stack.base})
    assert own.status_code == 200 and "switchboard_session" in own.cookies
    assert (await _login(stack.client(), "bob@example.com")).status_code == 200


async def test_every_json_endpoint_wants_json_and_its_own_origin(stack: Stack) -> None:
    alice = await stack.login("alice")
    token = (await alice.http.get("/api/v1/me")).json()
    assert token["email"] == "alice@example.com"
    wrong_type = await alice.http.post("/api/v1/canned-responses", content=b'{"shortcut": "x"}',
                                       headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    # Even with the session's cookie and CSRF token, a foreign page's request is refused.
    foreign = await alice.http.post("/api/v1/canned-responses",
                                    json={"shortcut": "hi", "text": "Hello"},
                                    headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert foreign.json()["error"]["code"] == "forbidden_origin"
    assert (await alice.http.get("/api/v1/canned-responses")).json() == []
    # Reading is not an unsafe request: no Origin check on GET.
    listed = await alice.http.get("/api/v1/canned-responses",
                                  headers={"Origin": "https://evil.example"})
    assert listed.status_code == 200
    own = await alice.http.post("/api/v1/canned-responses",
                                json={"shortcut": "hi", "text": "Hello"},
                                headers={"Origin": stack.base})
    assert own.status_code == 201, own.text
