"""A local server that answers like Telegram's Bot API (core.telegram.org/bots/api).

It follows the documented shapes: `POST /bot<token>/<method>` with form, multipart or JSON
parameters; answers `{"ok": true, "result": ...}` or `{"ok": false, "error_code": ...,
"description": ..., "parameters": {"retry_after": n}}`; files at
`GET /file/bot<token>/<file_path>`. It keeps the webhook that was set, the messages bots
sent, queued updates for getUpdates, and failures queued on demand. python-telegram-bot
talks to it over loopback.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.services import LoopbackServer, free_port

BOT_TOKEN = "7101234567:AAHk2s9dQe1w3Zt0pLmNo4rStUvWxYz0AbC"
BOT_ID = 7101234567


@dataclass
class Call:
    """One Bot API call the fake received."""

    method: str
    token: str
    params: dict[str, Any]


@dataclass
class FakeTelegram:
    """The Bot API on a loopback port, for one or more bot tokens."""

    tokens: dict[str, str] = field(default_factory=lambda: {BOT_TOKEN: "shop_support_bot"})
    port: int = field(default_factory=free_port)
    calls: list[Call] = field(default_factory=list)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> setWebhook
    sent: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # for getUpdates
    files: dict[str, bytes] = field(default_factory=dict)  # file_id -> bytes
    # Answers to the next send calls: (HTTP status, description, retry_after or None).
    failures: list[tuple[int, str, int | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        app = Starlette(routes=[
            Route("/bot{token}/{method}", self._method, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self._file, methods=["GET"]),
        ])
        self._served = LoopbackServer(app, self.port)
        self._next_message_id = 1000

    @property
    def url(self) -> str:
        """What an inbox's api_base_url is set to."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serve until stop()."""
        await self._served.start()

    async def stop(self) -> None:
        """Stop serving."""
        await self._served.stop()

    def called(self, method: str) -> list[Call]:
        """The calls of one Bot API method, in order."""
        return [c for c in self.calls if c.method == method]

    async def _params(self, request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").startswith("application/json"):
            return dict(await request.json())
        params: dict[str, Any] = {}
        async with request.form() as form:  # closes the uploaded files' spools
            for key, value in form.multi_items():
                if hasattr(value, "read"):
                    params[key] = {"filename": value.filename, "bytes": await value.read()}
                    continue
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    params[key] = value
        params.update(request.query_params)
        return params

    async def _method(self, request: Request) -> Response:
        token = request.path_params["token"]
        method = request.path_params["method"]
        params = await self._params(request)
        self.calls.append(Call(method, token, params))
        if token not in self.tokens:
            return _error(401, "Unauthorized")
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            return _error(404, "Not Found")
        return await handler(token, params)

    async def _getMe(self, token: str, params: dict[str, Any]) -> Response:
        return _ok({"id": int(token.split(":")[0]), "is_bot": True, "first_name": "Shop",
                    "username": self.tokens[token], "can_join_groups": False,
                    "can_read_all_group_messages": False, "supports_inline_queries": False})

    async def _setWebhook(self, token: str, params: dict[str, Any]) -> Response:
        secret = str(params.get("secret_token", ""))
        if not str(params.get("url", "")).startswith(("https://", "http://")):
            return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        if secret and not all(c.isalnum() or c in "_-" for c in secret):
            return _error(400, "Bad Request: secret token contains unallowed characters")
        self.webhooks[token] = params
        return _ok(True)

    async def _deleteWebhook(self, token: str, params: dict[str, Any]
                             ) -> Response:
        self.webhooks.pop(token, None)
        return _ok(True)

    async def _getUpdates(self, token: str, params: dict[str, Any]) -> Response:
        if token in self.webhooks:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active;"
                          " use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 2.0)
        while True:
            ready = [u for u in self.updates if u["update_id"] >= offset]
            if ready or time.monotonic() >= deadline:
                return _ok(ready)
            await asyncio.sleep(0.05)

    async def _getFile(self, token: str, params: dict[str, Any]) -> Response:
        file_id = str(params.get("file_id", ""))
        if file_id not in self.files:
            return _error(400, "Bad Request: invalid file_id")
        return _ok({"file_id": file_id, "file_unique_id": f"u-{file_id}",
                    "file_size": len(self.files[file_id]), "file_path": f"files/{file_id}"})

    async def _file(self, request: Request) -> Response:
        if request.path_params["token"] not in self.tokens:
            return Response(status_code=404)
        file_id = request.path_params["path"].removeprefix("files/")
        if file_id not in self.files:
            return Response(status_code=404)
        return Response(self.files[file_id], media_type="application/octet-stream")

    async def _sendPhoto(self, token: str, params: dict[str, Any]) -> Response:
        return await self._sendFile(token, params, "photo")

    async def _sendDocument(self, token: str, params: dict[str, Any]) -> Response:
        return await self._sendFile(token, params, "document")

    async def _sendFile(self, token: str, params: dict[str, Any], kind: str
                        ) -> Response:
        upload = params.get(kind)
        if not isinstance(upload, dict) or not upload.get("bytes"):
            return _error(400, f"Bad Request: there is no {kind} in the request")
        return await self._sendMessage(token, {**params, kind: None, "kind": kind,
                                               "file": upload})

    async def _sendMessage(self, token: str, params: dict[str, Any]) -> Response:
        if self.failures:
            status, description, retry_after = self.failures.pop(0)
            return _error(status, description, retry_after)
        self._next_message_id += 1
        chat_id = int(params["chat_id"])
        record = {"chat_id": chat_id, "text": params.get("text"),
                  "parse_mode": params.get("parse_mode"), "token": token}
        if "file" in params:
            record = {**record, "kind": params["kind"], "caption": params.get("caption"),
                      "filename": params["file"]["filename"], "bytes": params["file"]["bytes"]}
        self.sent.append(record)
        return _ok({"message_id": self._next_message_id, "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private"},
                    "from": {"id": int(token.split(":")[0]), "is_bot": True,
                             "first_name": "Shop"},
                    "text": params.get("text")})


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _error(status: int, description: str, retry_after: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return JSONResponse(body, status_code=status)


def private_message(update_id: int, *, user_id: int = 4242, first: str = "Tom",
                    text: str | None = "Hello", message_id: int | None = None,
                    **extra: Any) -> dict[str, Any]:
    """An Update with a private chat message, as Telegram posts it."""
    message: dict[str, Any] = {
        "message_id": message_id or update_id, "date": int(time.time()),
        "from": {"id": user_id, "is_bot": False, "first_name": first, "username": "tom_k",
                 "language_code": "de"},
        "chat": {"id": user_id, "first_name": first, "username": "tom_k", "type": "private"},
        **extra,
    }
    if text is not None:
        message["text"] = text
    return {"update_id": update_id, "message": message}
