"""Satisfaction surveys on the web: the pages an email's links open (no sign-in: the signed
token is the credential), and the switch of an inbox's survey (JSON API). How surveys are
sent and answered is inbox/csat.py; the widget's answers come through web/widget.py."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, StrictBool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inbox import csat
from inbox.agents import Principal
from inbox.errors import NotFound, Refused
from web.context import web_context
from web.http import Operation, act, authenticated, json_response, parse_json, path_id
from web.openapi import Doc
from web.ui import form_lists, page


class SurveySwitch(BaseModel):
    """Whether the inbox sends a satisfaction survey when a conversation is resolved."""

    model_config = ConfigDict(extra="forbid")
    enabled: StrictBool


async def switch_survey(request: Request, principal: Principal) -> Response:
    """Turn an inbox's satisfaction survey on or off (admins and the inbox's leads)."""
    body = await parse_json(request, SurveySwitch)
    enabled = await act(csat.set_inbox_survey(web_context(request).inbox, principal,
                                              path_id(request, "inbox_id"), body.enabled))
    return json_response(SurveySwitch(enabled=enabled))


OPERATIONS: list[Operation] = [
    (Doc("PUT", "/api/v1/inboxes/{inbox_id:id}/csat",
         "Turn the satisfaction survey on or off (admin, inbox lead)", SurveySwitch,
         SurveySwitch), authenticated(switch_survey)),
]


def _refused(exc: Exception) -> Response:
    text = str(exc)
    status = 404 if isinstance(exc, NotFound) else 400 if isinstance(exc, csat.BadLink) else 410
    return page("csat.html", status, problem=text[:1].upper() + text[1:] + ".")


async def score_link(request: Request) -> Response:
    """One click in the survey email: the score is recorded (once per link); then the
    optional comment."""
    ctx = web_context(request)
    raw = request.query_params.get("score", "")
    try:
        conversation_id, nonce = csat.read_token(ctx.inbox, request.path_params["token"],
                                                 "score")
        if not raw.isdigit() or int(raw) not in csat.SCORES:
            raise csat.BadLink("this survey link is not valid (its score is not 1 to 5)")
        await csat.answer(ctx.inbox, conversation_id, score=int(raw), via="email",
                          nonce=nonce, use_link=True)
    except (Refused, NotFound) as exc:
        return _refused(exc)
    return page("csat.html", score=int(raw), scores=list(csat.SCORES),
                comment_token=csat.link_token(ctx.inbox, conversation_id, nonce, "comment"))


async def comment_form(request: Request) -> Response:
    """The comment page's answer: a comment, and the score again (it may change)."""
    ctx = web_context(request)
    form = await form_lists(request)
    raw = (form.get("score") or [""])[0]
    comment = (form.get("comment") or [""])[0]
    try:
        conversation_id, nonce = csat.read_token(ctx.inbox, request.path_params["token"],
                                                 "comment")
        if not raw.isdigit() or int(raw) not in csat.SCORES:
            raise Refused("choose a score from 1 to 5")
        if len(comment) > csat.MAX_COMMENT:
            raise Refused(f"a comment has at most {csat.MAX_COMMENT} characters")
        await csat.answer(ctx.inbox, conversation_id, score=int(raw), comment=comment,
                          via="email", nonce=nonce)
    except (Refused, NotFound) as exc:
        return _refused(exc)
    return page("csat.html", score=int(raw), thanked=True)


ROUTES: list[BaseRoute] = [
    Route(csat.LINK_PATH + "/{token:str}", score_link, methods=["GET"]),
    Route(csat.LINK_PATH + "/{token:str}/comment", comment_form, methods=["POST"]),
]
