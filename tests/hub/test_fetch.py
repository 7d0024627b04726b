"""The outbound policy: no internal address, however it is named or redirected to."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from channels.api import ApiChannel
from channels.base import PermanentSendError
from hub.fetch import FetchPolicy, TargetRefused, build_http
from hub.types import Identity, OutboundMessage
from tests.services import free_port

INTERNAL = ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254",
            "100.64.1.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1",
            "::ffff:127.0.0.1", "::ffff:169.254.169.254"]
PUBLIC = ["93.184.216.34", "1.1.1.1", "2606:4700::1111"]


def test_internal_addresses_are_refused_unless_allowed() -> None:
    policy = FetchPolicy()
    for address in INTERNAL:
        assert not policy.address_allowed(ipaddress.ip_address(address)), address
    for address in PUBLIC:
        assert policy.address_allowed(ipaddress.ip_address(address)), address
    self_hosted = FetchPolicy.from_entries(["10.0.0.0/8", "crm.internal.example"])
    assert self_hosted.address_allowed(ipaddress.ip_address("10.1.2.3"))
    assert not self_hosted.address_allowed(ipaddress.ip_address("192.168.1.1"))
    assert self_hosted.hosts == {"crm.internal.example"}


@pytest.fixture
async def internal() -> AsyncIterator[str]:
    """An internal service on loopback: /secret answers, /hop redirects to /secret."""
    port = free_port()

    async def secret(request: Request) -> Response:
        return PlainTextResponse("internal-only: db password is hunter2", status_code=400)

    async def hop(request: Request) -> Response:
        return RedirectResponse(f"http://127.0.0.1:{port}/secret", status_code=302)

    app = Starlette(routes=[Route("/secret", secret, methods=["GET", "POST"]),
                            Route("/hop", hop, methods=["GET"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_loopback_is_refused_by_address_by_name_and_by_redirect(internal: str) -> None:
    port = internal.rsplit(":", 1)[1]
    async with build_http(FetchPolicy(allow_http=True)) as client:
        for url in (f"http://{internal}/secret", f"http://localhost:{port}/secret",
                    f"http://[::ffff:127.0.0.1]:{port}/secret"):
            with pytest.raises(TargetRefused, match="internal address"):
                await client.get(url)
    # A name allowed on purpose is reached; the redirect it answers with is checked again.
    named = FetchPolicy.from_entries(["localhost"], allow_http=True)
    async with build_http(named) as client:
        with pytest.raises(TargetRefused):
            await client.get(f"http://localhost:{port}/hop", follow_redirects=True)
    # Only https unless development allows http, for every hop.
    async with build_http(FetchPolicy.from_entries(["127.0.0.0/8"])) as client:
        with pytest.raises(TargetRefused, match="only https"):
            await client.get(f"http://{internal}/secret")
        with pytest.raises(TargetRefused, match="only https"):
            await client.get("file:///etc/passwd")
    # A self-hosted target named in the allowlist is reached.
    allowed = FetchPolicy.from_entries(["127.0.0.0/8"], allow_http=True)
    async with build_http(allowed) as client:
        assert (await client.get(f"http://{internal}/secret")).status_code == 400


def _reply() -> OutboundMessage:
    return OutboundMessage(message_id=1, conversation_id=2, inbox_id=7, channel="api",
                           recipient=Identity(kind="api", value="7:ada"), text="Hello",
                           idempotency_key="idem-123")


async def test_an_api_inbox_cannot_read_an_internal_service(internal: str) -> None:
    # The default policy: the outbound URL is refused for good, never retried.
    async with build_http(FetchPolicy(allow_http=True)) as client:
        channel = ApiChannel(http=client)
        with pytest.raises(PermanentSendError, match="may not be reached"):
            await channel.send(_reply(), {"secret": "s" * 16,
                                          "outbound_url": f"http://{internal}/secret"})
    # Even a target allowed on purpose never shows its answer's body to agents.
    allowed = FetchPolicy.from_entries(["127.0.0.0/8"], allow_http=True)
    async with build_http(allowed) as client:
        channel = ApiChannel(http=client)
        with pytest.raises(PermanentSendError) as refused:
            await channel.send(_reply(), {"secret": "s" * 16,
                                          "outbound_url": f"http://{internal}/secret"})
        assert str(refused.value).endswith("refused the message: 400 Bad Request")
        assert "hunter2" not in str(refused.value)


async def test_the_process_client_is_built_with_the_settings_policy() -> None:
    from config import Settings
    from hub.app import Runtime

    runtime = Runtime.build(Settings(outbound_allow=[], outbound_http=False))
    try:
        with pytest.raises(TargetRefused):
            await runtime.http.get("http://127.0.0.1:9/")
        assert isinstance(runtime.http, httpx.AsyncClient)
    finally:
        await runtime.http.aclose()
