"""Small HTTP helpers shared by the routes: JSON answers, errors, bodies, the principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from config import Settings
from hub.security import constant_time_equal
from hub.types import MAX_ROW_ID
from inbox import errors
from inbox.agents import Principal, principal_for
from inbox.queries import is_row_id
from web.context import WebContext, web_context
from web.openapi import Doc

SESSION_COOKIE = "switchboard_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
MAX_JSON_BODY = 256 * 1024

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
# A route's function: `Endpoint` as Starlette calls it; `Handler` behind `authenticated`.
Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Principal], Awaitable[Response]]
# One operation of the JSON API: its OpenAPI description and its endpoint. Each module of
# web/ ends with its table of these; web/app.py serves them and documents them alike.
Operation = tuple[Doc, Endpoint]


RETRY_AFTER_S = 5


class RequestModel(BaseModel):
    """A JSON request body: unknown fields are refused (422), not ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)


class HTTPProblem(Exception):
    """An error answer: status, machine-readable code, human message (and headers)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


# On every JSON answer: never sniffed as something else, never kept by a cache (it is one
# agent's data, and it changes).
JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def problem_response(problem: HTTPProblem) -> JSONResponse:
    """The JSON body of an error."""
    return JSONResponse(
        {"error": {"code": problem.code, "message": problem.message}}, status_code=problem.status,
        headers=JSON_HEADERS | (problem.headers or {}),
    )


def unavailable(what: str) -> HTTPProblem:
    """503 with Retry-After: a part Switchboard needs is down for now; nothing was accepted,
    so the sender should try again (providers do, on a 503)."""
    return HTTPProblem(503, "unavailable", f"{what} is unavailable right now; try again shortly",
                       headers={"Retry-After": str(RETRY_AFTER_S)})


def json_response(data: Any, status: int = 200) -> JSONResponse:
    """A JSON answer from models, lists of models or plain data."""
    return JSONResponse(_jsonable(data), status_code=status, headers=JSON_HEADERS)


def _jsonable(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list | tuple):
        return [_jsonable(item) for item in data]
    if isinstance(data, dict):
        return {key: _jsonable(value) for key, value in data.items()}
    return data


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(413, "too_large", f"the body may have at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(413, "too_large", f"the body may have at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_json(request: Request, model: type[M]) -> M:
    """The JSON body validated into `model`; 400/422 with the first problem otherwise.

    Only a body sent as `application/json` is read (415 otherwise): an HTML form on another
    site can send `text/plain` without asking, never `application/json`, so no page
    elsewhere can make a browser log in, accept an invitation or change anything."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise HTTPProblem(415, "unsupported_media_type",
                          "send the body as JSON, with Content-Type: application/json")
    body = await read_body(request, MAX_JSON_BODY)
    if not body:
        raise HTTPProblem(400, "invalid_body", "a JSON body is required")
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise HTTPProblem(400, "invalid_json", "the body is not valid JSON") from None
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise HTTPProblem(422, "invalid_field", f"{where}: {first['msg']}") from None
    nul = _nul_at(parsed.model_dump())
    if nul is not None:
        # PostgreSQL stores no NUL in text; SQLite would, and the two would disagree.
        raise HTTPProblem(422, "invalid_field",
                          f"{nul or 'body'}: text may not contain NUL (\\u0000)")
    return parsed


def _nul_at(value: Any, where: str = "") -> str | None:
    """The place of the first text holding a NUL character, or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return where or "body"
        found = _nul_at(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def session_token(conn: HTTPConnection) -> str:
    """The session token of a request or websocket: its cookie, or a bearer token; or ""."""
    token = conn.cookies.get(SESSION_COOKIE)
    if not token:
        auth = conn.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    return token or ""


async def current_principal(ctx: WebContext, conn: HTTPConnection) -> Principal | None:
    """The agent of the session cookie, or None."""
    token = session_token(conn)
    if not token:
        return None
    async with ctx.inbox.db.read() as session:
        return await principal_for(session, token)


def authenticated(handler: Handler) -> Endpoint:
    """Wrap a route: 401 without a session; unsafe methods need the session's CSRF token."""

    async def endpoint(request: Request) -> Response:
        principal = await current_principal(web_context(request), request)
        if principal is None:
            raise HTTPProblem(401, "unauthenticated", "log in first")
        uses_cookie = SESSION_COOKIE in request.cookies
        if uses_cookie and request.method not in SAFE_METHODS:
            if not constant_time_equal(request.headers.get(CSRF_HEADER, ""), principal.csrf_token):
                raise HTTPProblem(403, "csrf", "missing or wrong X-CSRF-Token header")
        return await handler(request, principal)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def int_param(value: str | None, name: str) -> int | None:
    """An optional integer query parameter; 400 when it is not one."""
    if value is None or value == "":
        return None
    if not is_row_id(value):
        raise HTTPProblem(400, "invalid_parameter", f"{name} must be a positive integer")
    return int(value)


def set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    """Give the browser its session cookie (HttpOnly, SameSite=Lax, Secure over HTTPS)."""
    response.set_cookie(
        SESSION_COOKIE, token, max_age=settings.session_days * 86400, httponly=True,
        secure=settings.base_url.startswith("https://"), samesite="lax", path="/",
    )


def client_address(conn: HTTPConnection) -> str:
    """The client's address (uvicorn puts a trusted proxy's X-Forwarded-For here)."""
    return conn.client.host if conn.client is not None else "unknown"


class SameOrigin:
    """ASGI middleware: an unsafe request to the API (/api/...) that a browser sends from
    another site's page is refused (403) before any handler runs, login and invitation
    acceptance included. Browsers name the page's origin in `Origin` on every POST, PUT,
    PATCH and DELETE; scripts and integrations send none and are unaffected (they
    authenticate with a bearer token or a signature). Any request whose query holds a NUL
    character is refused (422, as any other bad parameter) here too, once for every
    route."""

    def __init__(self, app: ASGIApp, origins: frozenset[str]) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and b"%00" in scope.get("query_string", b"").lower():
            # No query value may hold NUL: PostgreSQL refuses it in text, SQLite would store it.
            response = problem_response(HTTPProblem(
                422, "invalid_parameter", "a query parameter holds a NUL character (%00)"))
            await response(scope, receive, send)
            return
        if (scope["type"] == "http" and scope["method"] not in SAFE_METHODS
                and scope["path"].startswith("/api/")):
            origin = Headers(scope=scope).get("origin")
            if origin is not None and origin not in self.origins:
                response = problem_response(HTTPProblem(
                    403, "forbidden_origin",
                    "this request came from a page of another site; it was not carried out"))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def digits_up_to(limit: int) -> str:
    """A regular expression for the decimal numbers 0..limit (no sign, no leading zeros
    beyond the limit's length): what a path may carry as a row id."""
    top = str(limit)
    parts = [f"[0-9]{{1,{len(top) - 1}}}"] if len(top) > 1 else []
    for i, digit in enumerate(top):
        if digit != "0":
            low = "1" if i == 0 and len(top) > 1 else "0"
            if int(digit) - 1 >= int(low):
                rest = len(top) - i - 1
                tail = f"[0-9]{{{rest}}}" if rest else ""
                parts.append(f"{top[:i]}[{low}-{int(digit) - 1}]{tail}")
    parts.append(top)
    return "|".join(parts)


class RowIdConvertor(Convertor[int]):
    """`{name:id}` in a route: a row id, ASCII digits in the database's range. Anything
    else (letters, 2**63, "²") matches no route: 404, and no handler ever sees an id the
    database cannot hold."""

    regex = f"(?:{digits_up_to(MAX_ROW_ID)})"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", RowIdConvertor())


def routes_of(operations: list[Operation]) -> list[Route]:
    """The Starlette routes of a table of operations."""
    return [Route(doc.path, endpoint, methods=[doc.method]) for doc, endpoint in operations]


async def act(action: Awaitable[T]) -> T:
    """Run an inbox action; its refusals become the API's error answers."""
    try:
        return await action
    except errors.NotFound as exc:
        raise HTTPProblem(404, "not_found", str(exc)) from None
    except errors.WindowClosed as exc:
        raise HTTPProblem(422, "reply_window_closed", str(exc)) from None
    except errors.Refused as exc:
        raise HTTPProblem(422, "refused", str(exc)) from None
    except errors.Forbidden as exc:
        raise HTTPProblem(403, "forbidden", str(exc)) from None
    except errors.Collision as exc:
        raise HTTPProblem(409, "conflict", str(exc)) from None


def path_id(request: Request, name: str) -> int:
    """A row id from the path (the route's `{name:id}` already matched digits)."""
    return int(request.path_params[name])


# What the OpenAPI document says of operations some roles may not use.
LEAD_ONLY = {403: "Only team leads and admins"}
ADMIN_ONLY = {403: "Only admins"}
AUTHOR_ONLY = {403: "Only its author, a team lead or an admin"}


def admin_only(principal: Principal, what: str) -> None:
    """403 unless the agent is an admin: `what` completes "only admins ..."."""
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", f"only admins {what}")


def not_found(what: str) -> HTTPProblem:
    """404 for something that does not exist or that the agent may not see (alike)."""
    return HTTPProblem(404, "not_found", f"{what} not found")
