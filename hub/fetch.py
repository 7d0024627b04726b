"""Outbound HTTP with one policy: every request Switchboard makes to a URL it was given.

API-channel replies to an inbox's `outbound_url`, provider REST calls and media downloads (and
the outbound webhooks and CRM calls to come) all go through the client `build_http` makes.
Its policy, checked where it cannot be dodged:

- the scheme is https (http only with `SWITCHBOARD_OUTBOUND_HTTP`, for development), checked
  for every request, so for every redirect hop too;
- the address is public: the host name is resolved when the connection is opened and every
  address it resolves to is checked, and the connection goes to the checked address, so a
  DNS answer that changes between a check and the connect (rebinding) cannot slip through;
  loopback, private, link-local (cloud metadata), shared (CGNAT), multicast, reserved and
  unspecified addresses are refused, IPv4 written inside IPv6 too;
- `SWITCHBOARD_OUTBOUND_ALLOW` names what a self-hosted installation may reach anyway
  (networks such as 10.0.0.0/8, or host names);
- redirects are bounded (the client's `max_redirects`), timeouts and sizes stay the caller's
  (each caller bounds what it reads).

httpx-secure and safehttpx check a URL before the request (a pre-flight resolution), which a
rebinding DNS answer defeats; the check here sits in the connection itself, as httpcore's
network backend.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Not covered by the ipaddress predicates below: shared address space (RFC 6598).
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class TargetRefused(ValueError):
    """A URL the outbound policy does not let Switchboard reach (permanent: never retried)."""


@dataclass(frozen=True)
class FetchPolicy:
    """Where outbound requests may go."""

    allow_http: bool = False
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_entries(cls, entries: Iterable[str], *, allow_http: bool = False) -> FetchPolicy:
        """From `SWITCHBOARD_OUTBOUND_ALLOW` entries: networks (CIDR or one address) or hosts."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(allow_http=allow_http, networks=tuple(networks), hosts=frozenset(hosts))

    def address_allowed(self, address: IPAddress) -> bool:
        """Whether a connection may go to this address."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.networks):
            return True
        return not (address.is_private or address.is_loopback or address.is_link_local
                    or address.is_multicast or address.is_reserved or address.is_unspecified
                    or address in _SHARED)

    def check_url(self, url: httpx.URL) -> None:
        """Refuse a scheme the policy does not allow, or a URL without a host."""
        allowed = ("https", "http") if self.allow_http else ("https",)
        if url.scheme not in allowed:
            raise TargetRefused(f"only {' or '.join(allowed)} URLs may be reached, not "
                                f"{url.scheme or 'a relative URL'}")
        if not url.host:
            raise TargetRefused("the URL has no host")


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking every address before connecting."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        name = host.lower().rstrip(".")
        if name in self._policy.hosts:
            return await self._inner.connect_tcp(host, port, timeout, local_address,
                                                 socket_options)
        try:
            with anyio.fail_after(timeout):
                found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]
        refused = [a for a in addresses if not self._policy.address_allowed(a)]
        if not addresses or refused:
            raise TargetRefused(
                f"{host} resolves to {refused[0] if refused else 'nothing'}, a private, "
                "loopback or otherwise internal address (SWITCHBOARD_OUTBOUND_ALLOW lets "
                "a self-hosted target through)")
        return await self._inner.connect_tcp(str(addresses[0]), port, timeout, local_address,
                                             socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("unix sockets are not reachable from outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the policy: the scheme per request, the address per
    connection."""

    def __init__(self, policy: FetchPolicy, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._policy = policy
        # httpx builds its httpcore pool without a way to pass a network backend: the pool
        # keeps it in one attribute, set here (tests/hub/test_fetch.py proves it is used).
        assert isinstance(self._pool, httpcore.AsyncConnectionPool)
        self._pool._network_backend = _GuardedBackend(policy)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._policy.check_url(request.url)
        return await super().handle_async_request(request)


def build_http(policy: FetchPolicy, *, timeout: httpx.Timeout | None = None,
               max_redirects: int = 3) -> httpx.AsyncClient:
    """The process's client for outbound requests (redirects off unless a call asks)."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy),
        timeout=timeout or httpx.Timeout(10.0, connect=5.0),
        follow_redirects=False, max_redirects=max_redirects, trust_env=False,
    )


class TooLarge(ValueError):
    """A response body beyond the size the caller accepts."""


async def bounded_body(response: httpx.Response, max_bytes: int) -> bytes:
    """A streamed response's body, refused (TooLarge) as soon as it passes `max_bytes`:
    a declared Content-Length over the bound is refused before reading, a lying one changes
    nothing."""
    too_big = f"the file is larger than the {max_bytes} byte limit"
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise TooLarge(too_big)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(too_big)
        chunks.append(chunk)
    return b"".join(chunks)
