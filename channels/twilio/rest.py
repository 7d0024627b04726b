"""Sending through Twilio's Messages API with the twilio package's async client.

The client's requests go through Switchboard's shared httpx client (an AsyncHttpClient of
the twilio package), so a send never blocks the event loop and needs no session of its own
to open or close. `api_base_url` points the client elsewhere (a regional or test endpoint).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from twilio.base.exceptions import TwilioException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from channels.base import PermanentSendError, TransientSendError
from channels.twilio.errors import TRANSIENT_CODES, explain
from channels.twilio.media import api_base
from hub.types import OutboundMessage, SendReceipt

log = logging.getLogger("switchboard.channels.twilio")

SEND_TIMEOUT_SECONDS = 15.0
# Non-empty on purpose: given nothing, the client reads TWILIO_EDGE / TWILIO_REGION from the
# process environment and rewrites hosts; each inbox carries its whole account instead.
_NO_ENVIRONMENT = {"SWITCHBOARD": "1"}


class HttpxTwilioClient(AsyncHttpClient):  # type: ignore[misc]  # twilio ships no types
    """The twilio package's async HTTP client interface, carried by an httpx client."""

    def __init__(self, http: httpx.AsyncClient, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        super().__init__(log, True, timeout)
        self._http = http

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the twilio interface's signature)
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        """Make one request; transport errors propagate as httpx errors."""
        response = await self._http.request(
            method.upper(),
            uri,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout or self.timeout,
            follow_redirects=allow_redirects,
        )
        return TwilioResponse(response.status_code, response.text, response.headers)


def address(channel: str, number: str) -> str:
    """A number as Twilio addresses it on the channel: `whatsapp:+E164` or plain."""
    bare = number.split(":", 1)[1] if ":" in number else number
    return f"whatsapp:{bare.strip()}" if channel == "whatsapp" else bare.strip()


async def send_message(
    message: OutboundMessage,
    inbox_settings: Mapping[str, Any],
    *,
    http: httpx.AsyncClient,
    status_callback: str,
    media_urls: Sequence[str] = (),
) -> SendReceipt:
    """Create the message at Twilio; Permanent/TransientSendError when it refuses.

    `media_urls` are public links Twilio fetches the files from (MediaUrl).
    """
    account_sid = str(inbox_settings.get("account_sid") or "")
    token = str(inbox_settings.get("auth_token") or "")
    sender = str(inbox_settings.get("from_number") or "")
    service = str(inbox_settings.get("messaging_service_sid") or "")
    if not account_sid or not token:
        raise PermanentSendError("this inbox has no Twilio account_sid and auth_token")
    if not sender and not service:
        raise PermanentSendError("this inbox has neither a from_number nor a "
                                 "messaging_service_sid to send from")
    if message.recipient.kind != "phone":
        raise PermanentSendError(f"cannot send to a {message.recipient.kind} address")
    base = api_base(inbox_settings)
    if not base.startswith(("https://", "http://")):
        raise PermanentSendError("api_base_url must be an http(s) URL")
    fields: dict[str, Any] = {
        "to": address(message.channel, message.recipient.value),
        "status_callback": status_callback,
    }
    if sender:
        fields["from_"] = address(message.channel, sender)
    if service:
        fields["messaging_service_sid"] = service
    if message.template:
        fields["content_sid"] = message.template
        if message.template_variables:
            fields["content_variables"] = json.dumps(message.template_variables)
    else:
        if message.text or not media_urls:
            fields["body"] = message.text
        if media_urls:
            fields["media_url"] = list(media_urls)
    client = Client(username=account_sid, password=token, account_sid=account_sid,
                    http_client=HttpxTwilioClient(http), environment=_NO_ENVIRONMENT)
    client.api.base_url = base
    try:
        created = await client.messages.create_async(**fields)
    except TwilioException as exc:
        raise _send_error(exc) from None
    except httpx.HTTPError as exc:
        raise TransientSendError(f"could not reach Twilio: {type(exc).__name__}") from exc
    return SendReceipt(external_id=str(created.sid), status="sent")


def _send_error(exc: TwilioException) -> Exception:
    """A Twilio refusal as a retryable or a permanent failure, in words for the agent."""
    status = int(getattr(exc, "status", 0) or 0)
    raw_code = getattr(exc, "code", None)
    # Without a Twilio code in the answer the client repeats the HTTP status as the code.
    code = raw_code if isinstance(raw_code, int) and raw_code >= 10_000 else None
    said = str(getattr(exc, "msg", "") or getattr(exc, "detail", "") or "")
    said = said.removeprefix("Unable to create record").lstrip(": ").strip()[:300]
    reason = explain(code, said) if code is not None else (said or "no explanation given")
    if code is not None and said and said not in reason:
        reason += f" (Twilio: {said})"
    text = f"Twilio answered {status}: {reason}" if status else f"Twilio: {reason}"
    if status == 429 or status >= 500 or code in TRANSIENT_CODES:
        return TransientSendError(text)
    return PermanentSendError(text)
