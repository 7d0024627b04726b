"""CRM calls: through the process's guarded HTTP client, within the CRM's documented request
budget (a token bucket, `aiolimiter`), retried a few times when the CRM says "later"
(5xx, 429 and its Retry-After, the network: tenacity), and typed errors otherwise."""

from __future__ import annotations

import hashlib
import json as json_module
from typing import Any

import httpx
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from crm_sync.base import Account, Permanent, Transient, status_error
from hub.fetch import TooLarge, bounded_body
from hub.retry import honouring_retry_after

ATTEMPTS = 3
TIMEOUT_S = 15.0
MAX_ANSWER_BYTES = 2_000_000


class CrmClient:
    """One connection's calls: bounded in rate, retried briefly, errors typed."""

    def __init__(self, http: httpx.AsyncClient, *, rate: int, per_seconds: float,
                 attempts: int = ATTEMPTS, max_wait: float = 8.0) -> None:
        self.http = http
        self.limiter = AsyncLimiter(rate, per_seconds)
        self.attempts = attempts
        self.max_wait = max_wait
        self.requests = 0  # made, for tests and the log

    async def call(self, method: str, url: str, *, what: str,
                   headers: dict[str, str] | None = None, json: Any = None,
                   params: dict[str, Any] | None = None,
                   data: dict[str, str] | None = None, idempotent: bool = True) -> Any:
        """The JSON answer of a successful call (None when empty); Revoked, Transient or
        Permanent otherwise (Transient after the last of `attempts` tries).

        A call that creates something (`idempotent=False`) is tried again here only after a
        429, which says the CRM did nothing; after a timeout or a 5xx it may have made it,
        so the caller looks before it makes it again (on the job's next try)."""

        def again(failed: BaseException) -> bool:
            return isinstance(failed, Transient) and (idempotent or failed.status == 429)

        retrying = AsyncRetrying(
            retry=retry_if_exception(again), stop=stop_after_attempt(self.attempts),
            wait=honouring_retry_after(wait_exponential(multiplier=0.5, max=self.max_wait)),
            reraise=True)
        async for attempt in retrying:
            with attempt:
                return await self._once(method, url, what=what, headers=headers, json=json,
                                        params=params, data=data)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    async def _once(self, method: str, url: str, *, what: str, **kwargs: Any) -> Any:
        async with self.limiter:
            self.requests += 1
            try:
                async with self.http.stream(method, url, timeout=TIMEOUT_S,
                                            **kwargs) as response:
                    body = await bounded_body(response, MAX_ANSWER_BYTES)
            except TooLarge as exc:
                raise Permanent(f"{what}: {exc}") from exc
            except httpx.TransportError as exc:
                raise Transient(f"{what}: {type(exc).__name__} {exc}".strip(),
                                status=None) from exc
        if not response.is_success:
            raise status_error(response.status_code, response.headers, body, what)
        return json_module.loads(body) if body else None


class Budgeted:
    """What a connector shares: its CRM's address and one rate-bounded client per account
    and process (keyed by the setting that names the account, so the connect check and
    the sync after it spend the same budget)."""

    api: str  # the CRM's API address when the connection does not name one
    account_key: str  # the setting that tells accounts apart
    rate: int
    per_seconds: float

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self._clients: dict[str, CrmClient] = {}

    def base(self, account: Account) -> str:
        """The API address of the connection."""
        return str(account.get("api_base") or self.api).rstrip("/")

    def client(self, account: Account) -> CrmClient:
        """The account's client."""
        key = hashlib.sha256(f"{self.base(account)} {account.get(self.account_key)}"
                             .encode()).hexdigest()
        found = self._clients.get(key)
        if found is None:
            found = self._clients[key] = CrmClient(self.http, rate=self.rate,
                                                   per_seconds=self.per_seconds)
        return found
