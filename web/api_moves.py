"""Merging and splitting conversations (JSON API under /api/v1)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.events import ConversationView
from inbox.agents import Principal
from inbox.conversation_moves import merge_conversations, split_message
from web.api import _act
from web.context import WebContext
from web.http import authenticated, json_response, parse_json
from web.openapi import Doc


class MergeConversationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The conversation whose messages move into this one (same inbox, same customer).
    other_conversation_id: int


def move_routes(ctx: WebContext) -> tuple[list[Route], list[Doc]]:
    """The routes and their OpenAPI descriptions."""

    async def merge(request: Request, principal: Principal) -> Response:
        """Merge another conversation of the same customer into this one."""
        body = await parse_json(request, MergeConversationRequest)
        view = await _act(merge_conversations(
            ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
            other_id=body.other_conversation_id))
        return json_response(view)

    async def split(request: Request, principal: Principal) -> Response:
        """Move a customer's message into a new conversation; answers the new one."""
        view = await _act(split_message(
            ctx.inbox, principal, message_id=int(request.path_params["message_id"])))
        return json_response(view, status=201)

    table: list[tuple[Doc, Any]] = [
        (Doc("POST", "/api/v1/conversations/{conversation_id:int}/merge",
             "Merge another conversation into this one", MergeConversationRequest,
             ConversationView), authenticated(ctx, merge)),
        (Doc("POST", "/api/v1/messages/{message_id:int}/split",
             "Split a customer's message into a new conversation", response=ConversationView,
             status=201), authenticated(ctx, split)),
    ]
    routes = [Route(doc.path, endpoint, methods=[doc.method]) for doc, endpoint in table]
    return routes, [doc for doc, _ in table]
