"""Labels and priority: how agents sort and flag conversations.

Leads and admins keep the set of labels; any agent who sees a conversation puts labels on
it by name (matched without regard to case) and sets its priority. Both changes reach the
conversation's inbox as a ConversationUpdated event.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import ConversationUpdated, ConversationView, View
from hub.types import utcnow
from inbox.actions import conversation_to_change
from inbox.agents import Principal
from inbox.context import InboxContext
from inbox.errors import Forbidden, NotFound, Refused
from inbox.models import PRIORITIES, Conversation, ConversationLabel, Label
from inbox.outbox import stage_events
from inbox.ownership import may_manage, new_owner
from inbox.views import conversation_labels, load_conversation_view

COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_LABELS = 50  # on one conversation


async def list_labels(session: AsyncSession) -> list[Label]:
    """Every label, by name."""
    return list(await session.exec(select(Label).order_by(func.lower(Label.name), col(Label.id))))


def label_key(name: str) -> str:
    """A label name as names are compared: NFKC, case-folded (ß = SS, Ä = ä), spaces single."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


async def _label_named(session: AsyncSession, name: str) -> Label | None:
    return (await session.exec(select(Label).where(Label.name_key == label_key(name)))).first()


async def create_label(
    ctx: InboxContext, principal: Principal, *, name: str, color: str | None,
    team_id: int | None = None, description: str = "",
) -> Label:
    """Add a label to the set, owned by the workspace (admins) or a team (its leads; a lead
    of one team need not name it)."""
    if not principal.is_lead:
        raise Forbidden("only team leads and admins manage labels")
    name = " ".join(name.split())
    if not name or len(name) > 60 or "," in name:
        raise Refused("name: 1 to 60 characters, no comma (the list filter separates by comma)")
    if color is not None and not COLOR.match(color):
        raise Refused("color: a hex colour like #2563eb")
    description = " ".join(description.split())
    if len(description) > 200:
        raise Refused("description: at most 200 characters")
    try:
        async with ctx.db.write() as session:
            owner = await new_owner(session, principal, team_id, what="label")
            if await _label_named(session, name) is not None:
                raise Refused(f"a label named {name!r} exists already")
            label = Label(name=name, name_key=label_key(name), color=(color or "#6b7280").lower(),
                          team_id=owner, description=description)
            session.add(label)
            await session.flush()
    except IntegrityError:  # created by someone else at the same moment
        raise Refused(f"a label named {name!r} exists already") from None
    return label


async def delete_label(ctx: InboxContext, principal: Principal, *, label_id: int) -> None:
    """Remove a label from the set and from every conversation (its owning team's leads, and
    admins)."""
    events: list[View] = []
    async with ctx.db.write() as session:
        label = await session.get(Label, label_id)
        if label is None:
            raise NotFound(f"label {label_id} not found")
        if not may_manage(principal, label.team_id):
            raise Forbidden("only admins remove the workspace's labels, and a team's leads "
                            "their team's" if principal.is_lead
                            else "only team leads and admins manage labels")
        tagged = list(await session.exec(
            select(Conversation)
            .join(ConversationLabel, col(ConversationLabel.conversation_id) == col(Conversation.id))
            .where(ConversationLabel.label_id == label_id)
        ))
        await session.exec(delete(ConversationLabel).where(
            col(ConversationLabel.label_id) == label_id))
        await session.delete(label)
        await session.flush()
        # Open lists drop the label live, like any other change of a conversation's labels.
        for conversation in tagged:
            events.append(_updated(await load_conversation_view(session, conversation),
                                   ["labels"], principal.agent_id))
        stage_events(session, events)


def _updated(view: ConversationView, changes: list[str], by: int) -> ConversationUpdated:
    return ConversationUpdated(inbox_id=view.inbox_id, at=utcnow(), conversation=view,
                               changes=changes, by_agent_id=by)


async def set_conversation_labels(
    ctx: InboxContext, principal: Principal, *, conversation_id: int, names: list[str]
) -> ConversationView:
    """Put exactly these labels (by name) on a conversation; unknown names are refused."""
    view, _ = await _put_labels(ctx, principal, conversation_id, lambda _current: names)
    return view


async def change_labels(
    ctx: InboxContext, principal: Principal, *, conversation_id: int,
    add: Sequence[str] = (), remove: Sequence[str] = (),
) -> tuple[ConversationView, bool]:
    """Put labels on a conversation and take others off (by name), leaving the rest as they
    are (what automation does); with whether anything changed."""
    taken = {label_key(n) for n in remove}
    return await _put_labels(ctx, principal, conversation_id, lambda current: [
        *(n for n in current if label_key(n) not in taken), *add])


async def _put_labels(
    ctx: InboxContext, principal: Principal, conversation_id: int,
    names_of: Callable[[list[str]], Sequence[str]],
) -> tuple[ConversationView, bool]:
    async with ctx.db.write() as session:
        conversation = await conversation_to_change(session, principal, conversation_id)
        names = names_of(await conversation_labels(session, conversation_id))
        wanted = list(dict.fromkeys(label_key(n) for n in names if n.strip()))
        if len(wanted) > MAX_LABELS:
            raise Refused(f"a conversation may have at most {MAX_LABELS} labels")
        known = {
            label.name_key: label
            for label in await session.exec(select(Label).where(col(Label.name_key).in_(wanted)))
        } if wanted else {}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise Refused(f"labels: no label named {unknown[0]!r} (a lead or admin adds labels)")
        target = {label.id for label in known.values()}
        current = set(await session.exec(select(ConversationLabel.label_id).where(
            ConversationLabel.conversation_id == conversation_id)))
        if target == current:
            return await load_conversation_view(session, conversation), False
        if current - target:
            await session.exec(delete(ConversationLabel).where(
                col(ConversationLabel.conversation_id) == conversation_id,
                col(ConversationLabel.label_id).in_(current - target),
            ))
        for label_id in target - current:
            assert label_id is not None
            session.add(ConversationLabel(conversation_id=conversation_id, label_id=label_id))
        await session.flush()
        view = await load_conversation_view(session, conversation)
        stage_events(session, [_updated(view, ["labels"], principal.agent_id)])
    return view, True


async def set_priority(
    ctx: InboxContext, principal: Principal, *, conversation_id: int, priority: str
) -> ConversationView:
    """Set a conversation's priority (none, low, medium, high, urgent)."""
    if priority not in PRIORITIES:
        raise Refused(f"priority must be one of {', '.join(PRIORITIES)}")
    async with ctx.db.write() as session:
        conversation = await conversation_to_change(session, principal, conversation_id)
        if conversation.priority == priority:
            return await load_conversation_view(session, conversation)
        conversation.priority = priority
        session.add(conversation)
        await session.flush()
        view = await load_conversation_view(session, conversation)
        stage_events(session, [_updated(view, ["priority"], principal.agent_id)])
    return view
