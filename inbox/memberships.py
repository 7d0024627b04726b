"""Links between agents, inboxes and teams, as admins set them: checked ids, exact sets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from inbox.errors import Refused
from inbox.models import Agent, Inbox, Team

_NAMES: dict[type[SQLModel], str] = {Inbox: "inbox", Team: "team", Agent: "agent"}


async def check_ids(session: AsyncSession, model: type[Inbox | Team | Agent],
                    ids: Iterable[int]) -> list[int]:
    """The ids, without repeats, in order; Refused naming the first one that does not exist."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    key: Any = model.id
    found = set(await session.exec(select(key).where(col(key).in_(wanted))))
    missing = [i for i in wanted if i not in found]
    if missing:
        raise Refused(f"no {_NAMES[model]} with id {missing[0]}")
    return wanted


async def replace_links(
    session: AsyncSession,
    link: type[SQLModel],
    *,
    owner: tuple[str, int],
    other: str,
    wanted: Iterable[int],
) -> tuple[set[int], set[int]]:
    """Make the link rows of `owner` point at exactly `wanted`; return (added, removed).

    Rows that stay keep their other columns (e.g. when round robin last picked the member).
    """
    owner_field, owner_id = owner
    rows = list(await session.exec(
        select(link).where(col(getattr(link, owner_field)) == owner_id)
    ))
    current = {getattr(row, other): row for row in rows}
    target = set(wanted)
    removed = set(current) - target
    added = target - set(current)
    for other_id in removed:
        await session.delete(current[other_id])
    for other_id in sorted(added):
        session.add(link(**{owner_field: owner_id, other: other_id}))
    await session.flush()
    return added, removed


async def links_by(
    session: AsyncSession, link: type[SQLModel], *, key: str, value: str, keys: Iterable[int]
) -> dict[int, list[int]]:
    """For each id in `keys`, the sorted `value` ids its link rows point at."""
    wanted = sorted(set(keys))
    out: dict[int, list[int]] = {k: [] for k in wanted}
    if not wanted:
        return out
    rows = await session.exec(select(link).where(col(getattr(link, key)).in_(wanted)))
    for row in rows:
        out[getattr(row, key)].append(getattr(row, value))
    for ids in out.values():
        ids.sort()
    return out
