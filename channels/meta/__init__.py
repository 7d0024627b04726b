"""Facebook Messenger and Instagram direct messages, through one Meta app's webhooks.

Receiving: Meta proves the webhook URL with a GET (`hub.mode=subscribe`, the inbox's
`hub.verify_token`, echo `hub.challenge`); every POST carries `X-Hub-Signature-256`, an
HMAC-SHA256 of the raw body with the app secret, compared in constant time before anything
is parsed (403 otherwise). One app serves several pages or Instagram accounts and may send
all their events to one URL: each entry goes to the inbox of its page / account id among the
inboxes of the same app (the same app secret). The sender's name and picture are fetched
once from the Graph API (then cached) while the worker stores the message's files.

Sending: the Send API with `messaging_type: RESPONSE` inside the 24-hour window; outside
it, with the `HUMAN_AGENT` tag (7 days) where the inbox switches `human_agent_tag` on (the
inbox action refuses beyond the window before queuing, as for WhatsApp). Graph errors are
failed with Meta's message, or retried where Meta says they are temporary.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx

from channels.base import (
    Acknowledgement,
    ConnectFailed,
    Parsed,
    SettingSpec,
    VerificationFailed,
    WebhookRequest,
)
from channels.meta.events import OWN_MARK, parse_events
from channels.meta.graph import DEFAULT_GRAPH, GraphError, call, connect_error, send_error
from hub.fetch import TargetRefused, TooLarge, bounded_body
from hub.security import constant_time_equal
from hub.types import (
    AttachmentRefused,
    Capabilities,
    IdentityKind,
    InboundMessage,
    OutboundMessage,
    SendReceipt,
    StoreAttachment,
)

log = logging.getLogger("switchboard.channels.meta")

SIGNATURE_HEADER = "x-hub-signature-256"
PROFILES_KEPT = 10_000


def _settings(account: SettingSpec) -> tuple[SettingSpec, ...]:
    return (
        account,
        SettingSpec("page_access_token", "a page access token with the messaging permissions "
                    "(never expires when made from a system user)", secret=True),
        SettingSpec("app_secret", "the Meta app's secret: checks every webhook's signature",
                    secret=True),
        # Not a secret: it only lets Meta check that the URL is this inbox's, and the admin
        # pastes it into the app dashboard.
        SettingSpec("verify_token", "token Meta sends when it checks the webhook URL "
                    "(paste it into the app's webhook settings)"),
        SettingSpec("human_agent_tag", "answer up to 7 days after the customer's last message "
                    "(Meta's HUMAN_AGENT tag; the app needs that permission)",
                    required=False, form="flag"),
        SettingSpec("account_name", "the page's or account's name (filled in on connecting)",
                    required=False),
        SettingSpec("graph_api_url", f"Graph API base with its version (default "
                    f"{DEFAULT_GRAPH})", required=False, form="url"),
    )


class MetaChannel:
    """What Messenger and Instagram inboxes share; the subclasses name their account."""

    kind: ClassVar[str]
    display_name: ClassVar[str]
    settings: ClassVar[tuple[SettingSpec, ...]]
    object_name: ClassVar[str]  # the webhook's "object"
    identity: ClassVar[IdentityKind]
    account_setting: ClassVar[str]
    profile_fields: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, *, http: httpx.AsyncClient, max_media_bytes: int) -> None:
        self._http = http
        self._max_media_bytes = max_media_bytes
        self._profiles: OrderedDict[tuple[int, str], tuple[str | None, str | None]] = \
            OrderedDict()

    # -- settings and lifecycle -------------------------------------------------------

    def default_settings(self) -> dict[str, Any]:
        """A fresh verify token for Meta's webhook check."""
        return {"verify_token": secrets.token_urlsafe(24)}

    def check_settings(self, settings: Mapping[str, Any]) -> list[str]:
        """The account id is a number; the Graph API URL is an http(s) URL."""
        problems = []
        account = str(settings.get(self.account_setting) or "")
        if account and not account.isdigit():
            problems.append(f"{self.account_setting}: a number (from the page's About / "
                            "the account's settings)")
        url = str(settings.get("graph_api_url") or DEFAULT_GRAPH)
        if not url.startswith(("https://", "http://")):
            problems.append("graph_api_url: must be an http(s) URL")
        return problems

    def _account(self, inbox_settings: Mapping[str, Any]) -> str:
        return str(inbox_settings.get(self.account_setting) or "")

    async def test_connection(self, inbox_settings: Mapping[str, Any]) -> str:
        """Whether the token opens the page / account: its name."""
        return f"Connected to {await self._name(inbox_settings)}"

    async def _name(self, inbox_settings: Mapping[str, Any]) -> str:
        try:
            found = await call(self._http, inbox_settings, "GET", self._account(inbox_settings),
                               params={"fields": "id,name,username"})
        except GraphError as exc:
            raise connect_error(exc) from None
        return str(found.get("name") or found.get("username") or found.get("id"))

    async def connect(self, inbox_id: int, inbox_settings: Mapping[str, Any]
                      ) -> dict[str, Any]:
        """Check the token against the account; subscribe the app to its events."""
        name = await self._name(inbox_settings)
        await self._subscribe(inbox_settings, on=True)
        return {"account_name": name}

    async def disconnect(self, inbox_id: int, inbox_settings: Mapping[str, Any]) -> None:
        """Unsubscribe the app from the account's events."""
        await self._subscribe(inbox_settings, on=False)

    async def _subscribe(self, inbox_settings: Mapping[str, Any], *, on: bool) -> None:
        """Instagram accounts are subscribed through their app's dashboard: nothing here."""

    # -- receiving --------------------------------------------------------------------

    def challenge(self, request: WebhookRequest) -> Acknowledgement:
        """Meta's GET: echo hub.challenge when hub.verify_token is the inbox's."""
        query = parse_qs(urlsplit(request.url).query)
        mode = (query.get("hub.mode") or [""])[0]
        token = (query.get("hub.verify_token") or [""])[0]
        answer = (query.get("hub.challenge") or [""])[0]
        expected = str(request.inbox_settings.get("verify_token") or "")
        if mode != "subscribe" or not expected or not constant_time_equal(token, expected):
            raise VerificationFailed("verify token does not match", status=403)
        return Acknowledgement(200, answer.encode()[:200], "text/plain")

    def verify(self, request: WebhookRequest) -> None:
        """X-Hub-Signature-256 over the raw body with the app secret, in constant time."""
        secret = str(request.inbox_settings.get("app_secret") or "")
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not secret:
            raise VerificationFailed("inbox has no app secret", status=403)
        expected = "sha256=" + hmac.new(secret.encode(), request.body,
                                        hashlib.sha256).hexdigest()
        if not given or not constant_time_equal(given.lower(), expected):
            raise VerificationFailed("signature does not match", status=403)

    def webhook_routes(self, this: Mapping[str, Any], inboxes: Mapping[int, Mapping[str, Any]]
                       ) -> dict[str, int]:
        """The accounts of the inboxes with this inbox's app secret: a signature made with
        it vouches for their events too, and for no one else's."""
        secret = str(this.get("app_secret") or "")
        return {self._account(settings): inbox_id for inbox_id, settings in inboxes.items()
                if secret and self._account(settings)
                and constant_time_equal(str(settings.get("app_secret") or ""), secret)}

    def parse(self, request: WebhookRequest) -> Parsed:
        """The messages and delivery states of one POST, each for its account's inbox."""
        routes = dict(request.routes) or {self._account(request.inbox_settings):
                                          request.inbox_id}
        return parse_events(request.body, channel=self.kind, identity=self.identity,
                            expected_object=self.object_name, routes=routes)

    def acknowledge(self, request: WebhookRequest, parsed: Parsed) -> Acknowledgement:
        """Meta wants a 200 for every event it sends, or it retries and then gives up."""
        return Acknowledgement(200, b"EVENT_RECEIVED", "text/plain")

    async def fetch_media(self, message: InboundMessage, inbox_settings: Mapping[str, Any],
                          store: StoreAttachment) -> InboundMessage:
        """The sender's name and picture (once per person), and the files the message
        points at, downloaded from Meta's CDN and stored."""
        meta = dict(message.metadata)
        name, picture = await self._profile(message.inbox_id, message.sender.value,
                                            inbox_settings)
        if picture:
            meta["profile_pic"] = picture[:1000]
        refs, notes = [], []
        for index in range(int(meta.get("media_count", "0") or 0)):
            name_of = meta.get(f"media_{index}_name", "file")
            try:
                data = await self._download(meta.get(f"media_{index}_url", ""))
                refs.append(await store(name_of, meta.get(f"media_{index}_type", ""), data))
            except (AttachmentRefused, ConnectFailed) as exc:
                notes.append(f"[attachment {name_of} not kept: {exc}]")
        sender = message.sender
        if name and not sender.display_name:
            sender = sender.model_copy(update={"display_name": name[:200]})
        return message.model_copy(update={
            "sender": sender,
            "text": "\n".join(part for part in (message.text, *notes) if part),
            "attachments": (*message.attachments, *refs),
            "metadata": {k: v for k, v in meta.items() if not k.startswith("media_")},
        })

    async def _download(self, url: str) -> bytes:
        if not url.startswith(("https://", "http://")):
            raise ConnectFailed("no file address")
        try:
            async with self._http.stream("GET", url, follow_redirects=True,
                                         timeout=httpx.Timeout(30.0, connect=5.0)) as response:
                if response.status_code != 200:
                    raise ConnectFailed(f"Meta's file server answered {response.status_code}")
                return await bounded_body(response, self._max_media_bytes)
        except TooLarge as exc:
            raise ConnectFailed(str(exc)) from None
        except TargetRefused as exc:
            raise ConnectFailed(f"the file may not be fetched from there: {exc}") from None
        except httpx.HTTPError as exc:
            raise ConnectFailed(f"the file could not be fetched ({type(exc).__name__})") \
                from None

    async def _profile(self, inbox_id: int, person: str, inbox_settings: Mapping[str, Any]
                       ) -> tuple[str | None, str | None]:
        key = (inbox_id, person)
        if key in self._profiles:
            self._profiles.move_to_end(key)
            return self._profiles[key]
        try:
            found = await call(self._http, inbox_settings, "GET", person,
                               params={"fields": self.profile_fields})
        except GraphError as exc:
            # A name is a courtesy: the message goes on without it (and is asked again).
            log.info("%s profile of a sender not fetched: %s", self.kind, exc)
            return None, None
        name = " ".join(str(found[k]) for k in ("first_name", "last_name") if found.get(k)) \
            or str(found.get("name") or found.get("username") or "") or None
        picture = str(found.get("profile_pic") or "") or None
        self._profiles[key] = (name, picture)
        while len(self._profiles) > PROFILES_KEPT:
            self._profiles.popitem(last=False)
        return name, picture

    # -- sending ----------------------------------------------------------------------

    async def send(self, message: OutboundMessage, inbox_settings: Mapping[str, Any]
                   ) -> SendReceipt:
        """The Send API: RESPONSE inside the 24-hour window; outside it, where the inbox
        switched it on, again with the HUMAN_AGENT tag."""
        body: dict[str, Any] = {"recipient": {"id": message.recipient.value},
                                "messaging_type": "RESPONSE",
                                "message": {"text": message.text, "metadata": OWN_MARK}}
        path = f"{self._account(inbox_settings)}/messages"
        try:
            try:
                sent = await call(self._http, inbox_settings, "POST", path, json=body)
            except GraphError as exc:
                if not (exc.outside_window and inbox_settings.get("human_agent_tag")):
                    raise
                sent = await call(self._http, inbox_settings, "POST", path, json={
                    **body, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"})
        except GraphError as exc:
            raise send_error(exc) from None
        return SendReceipt(external_id=str(sent.get("message_id") or sent.get("mid")))


class MessengerChannel(MetaChannel):
    """A Facebook page's Messenger conversations."""

    kind: ClassVar[str] = "messenger"
    display_name: ClassVar[str] = "Messenger"
    object_name: ClassVar[str] = "page"
    identity: ClassVar[IdentityKind] = "messenger"
    account_setting: ClassVar[str] = "page_id"
    profile_fields: ClassVar[str] = "first_name,last_name,profile_pic"
    settings: ClassVar[tuple[SettingSpec, ...]] = _settings(
        SettingSpec("page_id", "the Facebook page's id"))
    capabilities: ClassVar[Capabilities] = Capabilities(
        reply_window_hours=24, extended_window=("human_agent_tag", 7 * 24), max_text=2000)
    SUBSCRIBED_FIELDS = ("messages,messaging_postbacks,message_deliveries,message_reads,"
                         "message_echoes")

    async def _subscribe(self, inbox_settings: Mapping[str, Any], *, on: bool) -> None:
        """Subscribe (or unsubscribe) the app to the page's messaging events."""
        path = f"{self._account(inbox_settings)}/subscribed_apps"
        try:
            if on:
                await call(self._http, inbox_settings, "POST", path,
                           params={"subscribed_fields": self.SUBSCRIBED_FIELDS})
            else:
                await call(self._http, inbox_settings, "DELETE", path)
        except GraphError as exc:
            raise connect_error(exc) from None


class InstagramChannel(MetaChannel):
    """An Instagram professional account's direct messages."""

    kind: ClassVar[str] = "instagram"
    display_name: ClassVar[str] = "Instagram"
    object_name: ClassVar[str] = "instagram"
    identity: ClassVar[IdentityKind] = "instagram"
    account_setting: ClassVar[str] = "account_id"
    profile_fields: ClassVar[str] = "name,username,profile_pic"
    settings: ClassVar[tuple[SettingSpec, ...]] = _settings(
        SettingSpec("account_id", "the Instagram professional account's id"))
    capabilities: ClassVar[Capabilities] = Capabilities(
        reply_window_hours=24, extended_window=("human_agent_tag", 7 * 24), max_text=1000)
