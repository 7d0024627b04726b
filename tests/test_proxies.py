"""X-Forwarded-For is believed only from the proxies the settings name (real processes)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.processes import ProcessStack

pytestmark = pytest.mark.slow

FORGED = {"X-Forwarded-For": "203.0.113.9"}


async def test_forwarded_headers_count_only_from_trusted_proxies(tmp_path: Path) -> None:
    """/metrics answers a loopback peer only: a forged X-Forwarded-For must not change who the
    peer is, and a trusted proxy's must."""
    async with ProcessStack(tmp_path / "plain", "embedded") as plain, \
            ProcessStack(tmp_path / "proxied", "embedded") as proxied:
        direct = plain.serve()
        behind = proxied.serve(SWITCHBOARD_TRUSTED_PROXIES='["127.0.0.1"]')
        await plain.wait_ready()
        await proxied.wait_ready()
        async with httpx.AsyncClient(timeout=10) as client:
            # No proxy configured: the header is the client's word, and ignored.
            forged = await client.get(f"{direct.base_url}/metrics", headers=FORGED)
            assert forged.status_code == 200
            # Behind a trusted proxy on loopback: the forwarded client is who asks.
            assert (await client.get(f"{behind.base_url}/metrics")).status_code == 200
            refused = await client.get(f"{behind.base_url}/metrics", headers=FORGED)
            assert refused.status_code == 403


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    from config import SettingsError, load_settings

    assert load_settings(trusted_proxies=["10.0.0.5", " 172.16.0.0/12"]).trusted_proxies == [
        "10.0.0.5", "172.16.0.0/12"]
    with pytest.raises(SettingsError, match="not an IP address or network"):
        load_settings(trusted_proxies=["proxy.example.com"])
