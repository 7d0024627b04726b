"""Satisfaction surveys (CSAT): one question when a conversation is resolved, answered 1-5.

An inbox that sends them (`Inbox.csat_survey`) asks once per conversation, the first time it
is resolved, on the customer's own channel, through the same reply action as an agent (so
the channel's checks hold: a WhatsApp survey goes only inside the 24-hour window):

- website chat: the widget shows 1-5 buttons under the survey message and a comment box
  (web/widget.py takes the answer with the visitor's token);
- email: a link per score carrying a signed token (web/csat.py); one click records the
  score, then an optional comment page. A link works once; a forged one never;
- every other channel (WhatsApp, SMS, Telegram, Messenger, Instagram, API): the customer
  replies with a digit. Ingest (inbox/ingest.py) takes a lone 1-5 on a resolved
  conversation with an open survey as the answer: stored in the thread, but it does not
  reopen the conversation.

One answer per conversation: a later one, within ANSWER_DAYS of the survey, replaces it.
The answer is copied on the conversation (`csat_score`), written on its activity and
announced as a conversation.updated with the "csat" change, which the `csat_received`
automation trigger listens to ("a score of at most 2: notify the team lead").

The sending is the `csat` consumer of the events stream (in the shared "integrations"
reader): it looks only at conversations being resolved.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.bus import Entry
from hub.events import (
    ConversationStatusChanged,
    ConversationUpdated,
    ConversationView,
    MessageCreated,
    View,
)
from hub.types import utcnow
from inbox.activity import add_activity
from inbox.agents import Principal
from inbox.assign_actions import leads_inbox
from inbox.automation_rules import system_agent_id
from inbox.context import InboxContext
from inbox.db import conflict_insert, execute, is_postgresql
from inbox.errors import Forbidden, NotFound, Refused
from inbox.event_consumers import each_event, kinds_of, unless_down
from inbox.models import Conversation, CsatSurvey, Inbox, table_of
from inbox.outbox import stage_events
from inbox.replies import reply
from inbox.views import load_conversation_view, message_view

log = logging.getLogger(__name__)

CONSUMER = "csat"
ANSWER_DAYS = 7  # a survey can be answered (and the answer changed) this long
MAX_COMMENT = 2000
SCORES = range(1, 6)
LINK_PATH = "/csat"
_TYPES = frozenset({"conversation.status_changed"})
# A reply that is only a score: "5", " 4 ", "3/5", "5 stars", "4!".
_DIGIT = re.compile(r"^\s*([1-5])\s*(?:/\s*5|stars?|[.!])?\s*$", re.IGNORECASE)

QUESTION = "How would you rate our help with this conversation?"


class BadLink(Refused):
    """A survey link that is forged or malformed (not one this installation made)."""


def digit_answer(text: str | None) -> int | None:
    """The score a customer's reply is, when it is only a score."""
    found = _DIGIT.match(text or "") if text and len(text) <= 12 else None
    return int(found.group(1)) if found else None


def answer_open(asked_at: datetime | None, now: datetime) -> bool:
    """Whether a survey sent then still takes an answer now."""
    return asked_at is not None and now - asked_at <= timedelta(days=ANSWER_DAYS)


# -- links (email) ---------------------------------------------------------------------------


def link_token(ctx: InboxContext, conversation_id: int, nonce: str, purpose: str) -> str:
    """The token of a survey's link ("score": the one-click links; "comment": the page
    after), signed with the installation's key."""
    payload = f"{conversation_id}.{nonce}"
    return f"{payload}.{ctx.secrets.signature(f'csat {purpose}', payload)}"


def read_token(ctx: InboxContext, token: str, purpose: str) -> tuple[int, str]:
    """The conversation and nonce a token is for; BadLink when it is forged or malformed."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or len(token) > 200:
        raise BadLink("this survey link is not valid")
    payload = f"{parts[0]}.{parts[1]}"
    if not ctx.secrets.signed(f"csat {purpose}", payload, parts[2]):
        raise BadLink("this survey link is not valid")
    return int(parts[0]), parts[1]


def survey_text(ctx: InboxContext, channel: str, conversation_id: int, nonce: str) -> str:
    """The survey as the customer reads it on their channel."""
    if channel == "webchat":
        return f"{QUESTION} Choose from 1 (poor) to 5 (great) below."
    if channel == "email":
        token = link_token(ctx, conversation_id, nonce, "score")
        base = f"{ctx.settings.base_url.rstrip('/')}{LINK_PATH}/{token}?score="
        words = {5: "5 - great", 4: "4 - good", 3: "3 - okay", 2: "2 - poor", 1: "1 - bad"}
        links = "\n".join(f"{words[n]}: {base}{n}" for n in sorted(SCORES, reverse=True))
        return f"{QUESTION}\n\nOne click records your answer:\n\n{links}"
    return f"{QUESTION} Reply with a number from 1 (poor) to 5 (great)."


# -- asking ---------------------------------------------------------------------------------


class CsatConsumer:
    """The `csat` consumer (see the module); `apply` is what a SharedReader calls."""

    name = CONSUMER

    async def apply(self, ctx: InboxContext, entries: Sequence[Entry]
                    ) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(entries)
        kinds = kinds_of(entries, _TYPES)
        if kinds is None:
            return outcomes

        async def surveying() -> frozenset[int]:
            async with ctx.db.read() as session:
                return frozenset(i for i in await session.exec(
                    select(Inbox.id).where(col(Inbox.csat_survey).is_(True))) if i)

        inboxes = await unless_down(surveying())
        if not inboxes:
            return outcomes

        async def one(event: Any) -> None:
            if isinstance(event, ConversationStatusChanged) \
                    and event.conversation.status == "resolved" \
                    and event.conversation.inbox_id in inboxes \
                    and event.conversation.merged_into_id is None \
                    and not event.conversation.muted:  # muted: nobody asks them anything
                await ask(ctx, event.conversation)

        return await each_event(entries, kinds, _TYPES, one, what="satisfaction surveys")


async def ask(ctx: InboxContext, view: ConversationView) -> None:
    """Send the conversation's survey, once (a second resolve, or this event again after a
    crash, sends nothing new: the reply's key is the survey's)."""
    now = utcnow()
    async with ctx.db.write() as session:
        inserted = (await execute(session, conflict_insert(
            table_of(CsatSurvey), is_postgresql(session)).values(
                conversation_id=view.id, inbox_id=view.inbox_id, channel=view.channel,
                contact_id=view.contact_id, assignee_id=view.assignee_id, team_id=view.team_id,
                nonce=secrets.token_urlsafe(12), asked_at=now)
            .on_conflict_do_nothing(index_elements=["conversation_id"])
            .returning(table_of(CsatSurvey).c.conversation_id))).first()
        survey = await session.get_one(CsatSurvey, view.id)
        if inserted is None and (survey.answered_at is not None
                                 or now - survey.asked_at > timedelta(minutes=10)):
            return  # asked before (a crash within minutes of it: the reply's key settles it)
        if inserted is not None:
            await execute(session, update(table_of(Conversation))
                          .where(table_of(Conversation).c.id == view.id)
                          .values(csat_asked_at=now))
        nonce = survey.nonce
    system = await system_agent_id(ctx)
    principal = Principal(agent_id=system, role="admin", inbox_ids=frozenset({view.inbox_id}),
                          csrf_token="")
    try:
        await reply(ctx, principal, conversation_id=view.id,
                    text=survey_text(ctx, view.channel, view.id, nonce),
                    idempotency_key=f"csat-{view.id}", meta={"survey": True, "automated": True})
    except (Refused, NotFound) as exc:
        # The channel would not take it (its reply window closed, the inbox disconnected):
        # the agents see why on the thread.
        async with ctx.db.write() as session:
            conversation = await session.get(Conversation, view.id)
            if conversation is not None:
                line = await add_activity(
                    session, conversation, f"The satisfaction survey was not sent: {exc}",
                    None)
                stage_events(session, [MessageCreated(
                    inbox_id=view.inbox_id, at=utcnow(), message=message_view(line),
                    conversation=await load_conversation_view(session, conversation))])


# -- answers --------------------------------------------------------------------------------


async def answer(ctx: InboxContext, conversation_id: int, *, score: int,
                 comment: str | None = None, via: str, nonce: str | None = None,
                 use_link: bool = False) -> CsatSurvey:
    """Record the customer's answer (replacing an earlier one); Refused when there is no
    open survey, the score is not 1-5, or (`nonce`) the link is not this survey's or
    (`use_link`) was used already."""
    if not isinstance(score, int) or isinstance(score, bool) or score not in SCORES:
        raise Refused("score: a whole number from 1 (poor) to 5 (great)")
    if comment is not None:
        comment = comment.strip()[:MAX_COMMENT] or None
    now = utcnow()
    async with ctx.db.write() as session:
        query = select(CsatSurvey).where(CsatSurvey.conversation_id == conversation_id)
        if is_postgresql(session):
            query = query.with_for_update()
        survey = (await session.exec(query)).first()
        if survey is None or (nonce is not None and survey.nonce != nonce):
            raise NotFound("no satisfaction survey was sent for this conversation")
        if not answer_open(survey.asked_at, now):
            raise Refused(f"this survey closed {ANSWER_DAYS} days after it was sent")
        if use_link:
            if survey.link_used_at is not None:
                raise Refused("this survey link was used already")
            survey.link_used_at = now
        await record(session, survey, score=score, comment=comment, via=via, now=now)
        return survey


async def record(session: AsyncSession, survey: CsatSurvey, *, score: int,
                 comment: str | None, via: str, now: datetime) -> None:
    """Store an answer on the survey and the conversation, write it on the activity and
    announce it (in the caller's transaction)."""
    survey.score, survey.answered_at, survey.answered_via = score, now, via
    if comment is not None:
        survey.comment = comment
    session.add(survey)
    conversation = await session.get(Conversation, survey.conversation_id)
    if conversation is None:
        return
    conversation.csat_score = score
    session.add(conversation)
    said = f": “{survey.comment}”" if survey.comment else ""
    line = await add_activity(session, conversation,
                              f"The customer rated this conversation {score}/5{said}", None)
    view = await load_conversation_view(session, conversation)
    events: list[View] = [
        ConversationUpdated(inbox_id=view.inbox_id, at=now, conversation=view,
                            changes=["csat"], by_agent_id=None),
        MessageCreated(inbox_id=view.inbox_id, at=now, message=message_view(line),
                       conversation=view)]
    stage_events(session, events)


async def record_replies(session: AsyncSession, answers: Sequence[tuple[int, int]],
                         now: datetime) -> None:
    """Customers' digit replies (conversation, score) that ingest took as answers."""
    for conversation_id, score in answers:
        survey = await session.get(CsatSurvey, conversation_id)
        if survey is not None and answer_open(survey.asked_at, now):
            await record(session, survey, score=score, comment=None, via="reply", now=now)


async def set_inbox_survey(ctx: InboxContext, principal: Principal, inbox_id: int,
                           enabled: bool) -> bool:
    """Turn an inbox's survey on or off (admins, and the leads of a team on the inbox)."""
    async with ctx.db.write() as session:
        inbox = await session.get(Inbox, inbox_id)
        if inbox is None or (inbox_id not in principal.inbox_ids and not principal.is_admin):
            raise NotFound(f"inbox {inbox_id} not found")
        if not await leads_inbox(session, principal, inbox_id):
            raise Forbidden("only admins and the leads of a team on this inbox change its "
                            "satisfaction survey")
        inbox.csat_survey = enabled
        session.add(inbox)
    return enabled
