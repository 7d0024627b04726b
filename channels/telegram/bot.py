"""python-telegram-bot's `Bot`, carried by Switchboard's shared httpx client.

Every Bot API call goes through the one outbound client (its address policy, timeouts and
pool), not a client of PTB's own: `SharedRequest` is PTB's request interface over it. The
Bot API's base URL is a setting of the inbox (a self-hosted Bot API server, or the local
fake of the tests); the token stays out of every log line.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from typing import Any

import httpx
from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import BaseRequest, RequestData

from channels.base import ConnectFailed, PermanentSendError, TransientSendError
from config.logging import redact_in_logs

# python-telegram-bot's documented opt-in to its next major version's durations (timedelta,
# not seconds); without it every 429 from Telegram emits a deprecation warning.
os.environ.setdefault("PTB_TIMEDELTA", "true")

DEFAULT_API_BASE = "https://api.telegram.org"
# The Bot API carries the token in the URL path (/bot<id>:<secret>/method): any log record
# quoting such a URL (a client library's request line, an error) has it cut.
redact_in_logs(re.compile(r"/bot\d+:[A-Za-z0-9_-]+"), "/bot<redacted>")
TIMEOUT_S = 15.0


class SharedRequest(BaseRequest):
    """PTB's request interface over a shared httpx client (which this never closes)."""

    def __init__(self, http: httpx.AsyncClient, timeout: float = TIMEOUT_S) -> None:
        self._http = http
        self._timeout = timeout

    @property
    def read_timeout(self) -> float | None:
        return self._timeout

    async def initialize(self) -> None:
        """Nothing to open: the client is shared."""

    async def shutdown(self) -> None:
        """Nothing to close: the client is shared."""

    async def do_request(
        self, url: str, method: str, request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """One Bot API request; transport failures become PTB's own errors."""
        timeout = read_timeout if isinstance(read_timeout, int | float) else self._timeout
        try:
            response = await self._http.request(
                method, url, timeout=timeout + 5.0,
                files=request_data.multipart_data if request_data else None,
                data=request_data.json_parameters if request_data else None)
        except httpx.TimeoutException as exc:
            raise TimedOut(f"the Bot API did not answer in {timeout:.0f} s") from exc
        except httpx.HTTPError as exc:
            # Never the URL: it carries the bot token.
            raise NetworkError(f"the Bot API could not be reached ({type(exc).__name__})") \
                from exc
        return response.status_code, response.content


def api_base(inbox_settings: Mapping[str, Any]) -> str:
    """The Bot API server of an inbox (Telegram's own unless the admin set another)."""
    return str(inbox_settings.get("api_base_url") or DEFAULT_API_BASE).rstrip("/")


def bot(inbox_settings: Mapping[str, Any], http: httpx.AsyncClient) -> Bot:
    """A Bot for the inbox's token, talking through the shared client."""
    base = api_base(inbox_settings)
    request = SharedRequest(http)
    return Bot(token=str(inbox_settings.get("bot_token") or ""), base_url=f"{base}/bot",
               base_file_url=f"{base}/file/bot", request=request,
               get_updates_request=SharedRequest(http, timeout=60.0))


def escaped(text: str) -> str:
    """Text for parse_mode=HTML: Telegram's HTML subset with nothing of the agent's taken
    as markup."""
    return html.escape(text, quote=False)


def send_error(exc: TelegramError) -> Exception:
    """A Bot API failure as a send outcome: retried where Telegram says so, else failed with
    Telegram's reason."""
    if isinstance(exc, RetryAfter):
        seconds = exc.retry_after
        after = seconds.total_seconds() if hasattr(seconds, "total_seconds") else float(seconds)
        return TransientSendError(f"Telegram rate limit: retry after {after:.0f} s",
                                  retry_after=after)
    if isinstance(exc, TimedOut | NetworkError) and not isinstance(exc, BadRequest):
        return TransientSendError(str(exc))
    if isinstance(exc, Forbidden):
        return PermanentSendError(f"Telegram refused: {exc.message} (the customer blocked the "
                                  "bot or never started it)")
    if isinstance(exc, ChatMigrated):
        return PermanentSendError("Telegram refused: the chat moved to a supergroup")
    if isinstance(exc, InvalidToken):
        return PermanentSendError("Telegram refused the bot token (revoked or wrong): "
                                  "change it in the inbox's settings")
    return PermanentSendError(f"Telegram refused: {exc.message}")


def connect_error(exc: TelegramError) -> ConnectFailed:
    """A Bot API failure while connecting or testing, for the admin."""
    if isinstance(exc, InvalidToken):
        return ConnectFailed("Telegram does not know this bot token (copy it again from "
                             "@BotFather)")
    return ConnectFailed(f"Telegram answered: {exc.message}")


class UpdatesFailed(Exception):
    """getUpdates did not answer with updates (the reason, never the URL: it holds the
    token)."""


async def raw_updates(inbox_settings: Mapping[str, Any], http: httpx.AsyncClient, *,
                      offset: int, poll_seconds: int, allowed: list[str]) -> list[Any]:
    """getUpdates as Telegram answers it, the updates left as JSON: one update the client
    library could not read must not stall polling (it is parsed, or quarantined, like a
    webhook's)."""
    url = f"{api_base(inbox_settings)}/bot{inbox_settings.get('bot_token') or ''}/getUpdates"
    try:
        response = await http.post(url, json={"offset": offset or None, "timeout": poll_seconds,
                                               "allowed_updates": allowed},
                                   timeout=poll_seconds + 10.0)
        body = response.json()
    except httpx.HTTPError as exc:
        raise UpdatesFailed(f"the Bot API could not be reached ({type(exc).__name__})") \
            from None
    except ValueError:
        raise UpdatesFailed(f"the Bot API answered {response.status_code}, not JSON") from None
    if not isinstance(body, dict) or not body.get("ok"):
        detail = body.get("description") if isinstance(body, dict) else None
        raise UpdatesFailed(str(detail or f"HTTP {response.status_code}"))
    result = body.get("result")
    return result if isinstance(result, list) else []
