"""Who owns a label or a canned response, and so who may change it.

Each is owned by the whole workspace (no team: admins manage it) or by one team (its leads
manage it, and admins). A canned response an agent saves for themselves has no team and
stays theirs to change as well.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from inbox.agents import Principal
from inbox.errors import Forbidden, Refused
from inbox.models import Team


def may_manage(principal: Principal, team_id: int | None) -> bool:
    """Whether the principal manages what this team (None: the workspace) owns."""
    return principal.is_admin or (
        principal.is_lead and team_id is not None and team_id in principal.team_ids)


async def new_owner(
    session: AsyncSession, principal: Principal, team_id: int | None, *, what: str,
    personal: bool = False,
) -> int | None:
    """The team that owns a new `what`: the one given, checked; a lead who names none gets
    their only team (or, with `personal`, nothing: it is theirs alone)."""
    if team_id is None:
        if principal.is_admin or personal:
            return None
        if principal.is_lead and len(principal.team_ids) == 1:
            return next(iter(principal.team_ids))
        if principal.is_lead:
            raise Refused(f"team_id: say which of your teams owns the {what}"
                          if principal.team_ids else f"team_id: you lead no team; ask an admin "
                          f"for a {what} of the whole workspace")
        raise Forbidden(f"only team leads and admins manage {what}s")
    if await session.get(Team, team_id) is None:
        raise Refused(f"team_id: no team {team_id}")
    if not may_manage(principal, team_id):
        raise Forbidden(f"only the team's leads and admins manage its {what}s")
    return team_id
