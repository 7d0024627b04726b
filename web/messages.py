"""Messages: a message split out into a new conversation, and a message's sanitised HTML as a
document of its own, for the sandboxed frame in the thread.

The HTML was sanitised when the mail was parsed (channels/email/html.py). Served here, it is
also fenced in: its own Content-Security-Policy loads nothing but this site's images (the
mail's inline pictures) and runs no script (`sandbox` without allow-scripts), and it may be
framed by this site only. The inbox page keeps its own policy; the frame is same-origin so
that the page can size it and the pictures load with the agent's session.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hub.events import ConversationView
from inbox.agents import Principal
from inbox.conversation_moves import split_message
from inbox.queries import visible_message_html
from web.context import web_context
from web.http import HTTPProblem, Operation, act, authenticated, json_response
from web.openapi import Doc

FRAME_CSP = "; ".join((
    "default-src 'none'",
    "img-src 'self'",
    "style-src 'unsafe-inline'",  # the mail's own inline styles, filtered when it was parsed
    "form-action 'none'",
    "base-uri 'none'",
    "frame-ancestors 'self'",
    "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox",
))
# How the mail reads inside the thread; its own styles come after and win.
_PAGE = ("<!doctype html><html><head><meta charset=\"utf-8\"><style>"
         "html{color-scheme:light}body{margin:0;padding:2px 0;font:14px/1.45 system-ui,"
         "-apple-system,'Segoe UI',sans-serif;color:#1d2330;overflow-wrap:anywhere}"
         "img{max-width:100%;height:auto}table{max-width:100%}p{margin:0 0 .6em}"
         "blockquote{margin:0 0 0 .4em;padding-left:.8em;border-left:3px solid #d5d9e2;"
         "color:#555}a{color:#1a56c4}</style></head><body>{body}</body></html>")


async def message_html(request: Request, principal: Principal) -> Response:
    """The sanitised HTML of a message, as a framed document that runs nothing."""
    async with web_context(request).inbox.db.read() as session:
        html = await visible_message_html(
            session, principal, int(request.path_params["message_id"]))
    if html is None:
        raise HTTPProblem(404, "not_found", "no such message with HTML")
    return Response(_PAGE.replace("{body}", html), media_type="text/html", headers={
        "Content-Security-Policy": FRAME_CSP,
        "X-Frame-Options": "SAMEORIGIN",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "private, max-age=3600",
    })


async def split(request: Request, principal: Principal) -> Response:
    """Move a customer's message into a new conversation; answers the new one."""
    ctx = web_context(request)
    view = await act(split_message(
        ctx.inbox, principal, message_id=int(request.path_params["message_id"])))
    return json_response(view, status=201)


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/messages/{message_id:id}/html",
         "A message's sanitised HTML, as a document for a sandboxed frame",
         extra_responses={404: "No such message, not yours, or it has no HTML"}),
     authenticated(message_html)),
    (Doc("POST", "/api/v1/messages/{message_id:id}/split",
         "Split a customer's message into a new conversation", response=ConversationView,
         status=201), authenticated(split)),
]
