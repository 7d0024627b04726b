"""The Graph API calls Messenger and Instagram inboxes make, over the shared httpx client.

The page access token goes in the `Authorization: Bearer` header (never the URL, so it
stays out of every log line). Errors come back as `{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}` and are sorted into what a retry may fix (rate limits,
temporary and server errors) and what it never will (an expired token, a person who is not
available, a closed window), each with Meta's own message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from channels.base import ConnectFailed, PermanentSendError, TransientSendError
from hub.fetch import TargetRefused

DEFAULT_GRAPH = "https://graph.facebook.com/v21.0"
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# Rate limits (4, 17, 32, 613), temporary errors (1, 2), and Messenger's "try again" (-1).
TRANSIENT_CODES = {-1, 1, 2, 4, 17, 32, 341, 613}
# Sent outside the 24-hour window without a tag (code 10 with this subcode).
OUTSIDE_WINDOW_SUBCODE = 2018278


class GraphError(Exception):
    """An error answer of the Graph API, with Meta's code and message."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        error = body.get("error") if isinstance(body.get("error"), Mapping) else {}
        assert isinstance(error, Mapping)
        self.status = status
        self.code = int(error.get("code") or 0)
        self.subcode = int(error.get("error_subcode") or 0)
        self.detail = str(error.get("message") or f"HTTP {status}")
        super().__init__(f"{self.detail} (code {self.code}"
                         + (f", subcode {self.subcode})" if self.subcode else ")"))

    @property
    def transient(self) -> bool:
        return self.status >= 500 or self.status == 429 or self.code in TRANSIENT_CODES

    @property
    def outside_window(self) -> bool:
        return self.code == 10 and self.subcode == OUTSIDE_WINDOW_SUBCODE


def graph_base(inbox_settings: Mapping[str, Any]) -> str:
    """The Graph API base of an inbox, with its version (Meta's own unless set)."""
    return str(inbox_settings.get("graph_api_url") or DEFAULT_GRAPH).rstrip("/")


async def call(http: httpx.AsyncClient, inbox_settings: Mapping[str, Any], method: str,
               path: str, *, params: Mapping[str, str] | None = None,
               json: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One Graph API request with the inbox's page token; GraphError on an error answer."""
    token = str(inbox_settings.get("page_access_token") or "")
    try:
        response = await http.request(
            method, f"{graph_base(inbox_settings)}/{path.lstrip('/')}", params=params,
            json=json, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
    except TargetRefused as exc:
        raise GraphError(0, {"error": {"message": f"the Graph API URL is refused: {exc}",
                                       "code": 0}}) from None
    except httpx.HTTPError as exc:
        raise GraphError(503, {"error": {"message": "the Graph API could not be reached "
                                         f"({type(exc).__name__})", "code": -1}}) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400 or not isinstance(body, dict) or "error" in body:
        raise GraphError(response.status_code, body if isinstance(body, dict) else {})
    return body


def send_error(exc: GraphError) -> Exception:
    """A Graph API failure as a send outcome."""
    if exc.transient:
        return TransientSendError(f"Meta answered: {exc}")
    return PermanentSendError(f"Meta refused: {exc}")


def connect_error(exc: GraphError) -> ConnectFailed:
    """A Graph API failure while connecting or testing, for the admin."""
    if exc.code == 190:
        return ConnectFailed(f"Meta does not accept this page access token: {exc.detail}")
    return ConnectFailed(f"Meta answered: {exc}")
