"""The refusals of inbox actions, shared by every action module (the web maps them to HTTP)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from inbox.agents import Principal

Row = TypeVar("Row")


class NotFound(LookupError):
    """The conversation does not exist or the agent may not see it (both look the same)."""


class Refused(ValueError):
    """An action the rules do not allow, with a message for the agent."""


class Forbidden(PermissionError):
    """The agent may see this but their role does not let them do it."""


class Collision(Exception):
    """Someone else replied after the last message the agent saw (send again with force)."""


class WindowClosed(Refused):
    """Free text outside the channel's reply window: only an approved template may go out."""

    def __init__(self, hours: int, closed_at: datetime, *, channel: str = "this channel") -> None:
        super().__init__(
            f"the {channel} {hours}-hour window is closed; send an approved template"
        )
        self.hours = hours
        self.closed_at = closed_at
        self.channel = channel


def admins_only(principal: Principal, doing: str) -> None:
    """Forbidden unless an admin asks: `doing` says what ("change inboxes")."""
    if not principal.is_admin:
        raise Forbidden(f"only admins {doing}")


async def existing(session: AsyncSession, model: type[Row], key: Any, noun: str) -> Row:
    """The row with this primary key; NotFound ("<noun> <key> not found") when none."""
    row = await session.get(model, key)
    if row is None:
        raise NotFound(f"{noun} {key} not found")
    return row
