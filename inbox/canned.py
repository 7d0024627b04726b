"""Canned responses: saved replies an agent inserts by typing /shortcut in the reply box.

A response may use variables, filled in for the conversation it is inserted into:
{{contact.name}}, {{contact.first_name}}, {{contact.email}}, {{agent.name}},
{{agent.first_name}}, {{conversation.id}}. An unknown variable is refused when saved, so
a typo never reaches a customer. The result is plain text: values go in as they are and
nothing is ever turned into HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import utcnow
from inbox.agents import Principal
from inbox.errors import Forbidden, NotFound, Refused
from inbox.models import Agent, CannedResponse, Contact, Conversation
from inbox.ownership import may_manage, new_owner
from inbox.queries import visible_conversation

SHORTCUT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
# Any {{ ... }}: the whole set is checked, so "{{contact.nmae}}" is an error, not text.
VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
MAX_TEXT = 5000
MAX_LISTED = 100


def _first_name(name: str | None) -> str:
    return (name or "").split(maxsplit=1)[0] if (name or "").strip() else ""


# What each variable is, from the conversation's contact, the agent and the conversation.
VARIABLES: dict[str, Callable[[Contact, Agent, Conversation], str]] = {
    "contact.name": lambda contact, agent, conv: contact.name or "",
    "contact.first_name": lambda contact, agent, conv: _first_name(contact.name),
    "contact.email": lambda contact, agent, conv: contact.email or "",
    "agent.name": lambda contact, agent, conv: agent.name,
    "agent.first_name": lambda contact, agent, conv: _first_name(agent.name),
    "conversation.id": lambda contact, agent, conv: str(conv.id),
}


def _shortcut(raw: str) -> str:
    value = raw.strip().lower().removeprefix("/")
    if not SHORTCUT.match(value):
        raise Refused("shortcut: 1 to 60 letters, digits, - or _ (typed after a /)")
    return value


def _checked_text(text: str) -> str:
    if not text.strip():
        raise Refused("text: a canned response needs some text")
    if len(text) > MAX_TEXT:
        raise Refused(f"text: at most {MAX_TEXT} characters")
    unknown = [name for name in VARIABLE.findall(text) if name not in VARIABLES]
    if unknown:
        raise Refused(f"text: unknown variable {{{{{unknown[0]}}}}}; use "
                      + ", ".join("{{" + name + "}}" for name in VARIABLES))
    return text


async def _taken(session: AsyncSession, shortcut: str, but: int | None = None) -> bool:
    query = select(CannedResponse.id).where(CannedResponse.shortcut == shortcut)
    if but is not None:
        query = query.where(CannedResponse.id != but)
    return (await session.exec(query)).first() is not None


async def list_canned(session: AsyncSession, *, q: str | None = None) -> list[CannedResponse]:
    """Canned responses by shortcut; `q` matches a shortcut's start or the title or text."""
    query = select(CannedResponse)
    if q and q.strip():
        needle = q.strip().lower().removeprefix("/")
        query = query.where(or_(
            col(CannedResponse.shortcut).startswith(needle, autoescape=True),
            func.lower(CannedResponse.title).contains(needle, autoescape=True),
            func.lower(CannedResponse.text).contains(needle, autoescape=True),
        ))
    return list(await session.exec(query.order_by(col(CannedResponse.shortcut)).limit(MAX_LISTED)))


async def create_canned(
    session: AsyncSession, principal: Principal, *, shortcut: str, title: str, text: str,
    team_id: int | None = None,
) -> CannedResponse:
    """Save a canned response; its shortcut must be free and its variables known. With a
    team it is that team's (its leads and admins change it), without one its author's."""
    value = _shortcut(shortcut)
    owner = await new_owner(session, principal, team_id, what="canned response",
                            personal=True)
    row = CannedResponse(shortcut=value, title=title.strip(), text=_checked_text(text),
                         created_by=principal.agent_id, team_id=owner)
    if await _taken(session, value):
        raise Refused(f"shortcut: /{value} is taken")
    session.add(row)
    await session.flush()
    return row


async def _editable(session: AsyncSession, principal: Principal, canned_id: int) -> CannedResponse:
    row = await session.get(CannedResponse, canned_id)
    if row is None:
        raise NotFound(f"canned response {canned_id} not found")
    mine = row.created_by == principal.agent_id and row.team_id is None
    if not (mine or may_manage(principal, row.team_id)):
        raise Forbidden("only its author, its team's leads or an admin change a canned "
                        "response")
    return row


async def update_canned(
    session: AsyncSession,
    principal: Principal,
    canned_id: int,
    *,
    shortcut: str | None = None,
    title: str | None = None,
    text: str | None = None,
) -> CannedResponse:
    """Change a canned response (its author, its team's leads or an admin)."""
    row = await _editable(session, principal, canned_id)
    if shortcut is not None:
        value = _shortcut(shortcut)
        if await _taken(session, value, but=canned_id):
            raise Refused(f"shortcut: /{value} is taken")
        row.shortcut = value
    if title is not None:
        row.title = title.strip()
    if text is not None:
        row.text = _checked_text(text)
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()
    return row


async def delete_canned(session: AsyncSession, principal: Principal, canned_id: int) -> None:
    """Remove a canned response (its author, its team's leads or an admin)."""
    await session.delete(await _editable(session, principal, canned_id))


async def render_canned(
    session: AsyncSession, principal: Principal, *, conversation_id: int, canned_id: int
) -> str:
    """The canned response's text with its variables filled in for this conversation."""
    conversation = await visible_conversation(session, principal, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    row = await session.get(CannedResponse, canned_id)
    if row is None:
        raise NotFound(f"canned response {canned_id} not found")
    contact = await session.get_one(Contact, conversation.contact_id)
    agent = await session.get_one(Agent, principal.agent_id)

    return fill_variables(row.text, contact, agent, conversation)


def fill_variables(text: str, contact: Contact, agent: Agent, conversation: Conversation) -> str:
    """Text with its {{variables}} filled in; a variable retired after the text was saved
    is left out, never shown raw."""

    def fill(match: re.Match[str]) -> str:
        value = VARIABLES.get(match.group(1))
        return value(contact, agent, conversation) if value else ""

    return VARIABLE.sub(fill, text)


SAMPLE_CONTACT = Contact(id=0, name="Ada Lovelace", email="ada@example.com")
SAMPLE_CONVERSATION_ID = 1042


def preview(text: str, agent_name: str) -> str:
    """How a canned response reads for a sample customer (Ada Lovelace), from this agent:
    what the admin page shows beside each one."""
    values = sample_values(agent_name)
    return VARIABLE.sub(lambda match: values.get(match.group(1), ""), text)


def sample_values(agent_name: str) -> dict[str, str]:
    """Every variable's value in the preview (what the page's live preview fills in)."""
    agent = Agent(id=0, email="", name=agent_name, password_hash="")
    conversation = Conversation(id=SAMPLE_CONVERSATION_ID, inbox_id=0, contact_id=0)
    return {name: value(SAMPLE_CONTACT, agent, conversation)
            for name, value in VARIABLES.items()}
