"""The demo's data tells a story: every feature has something to show, seeded once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlmodel import func, select

from config import Settings
from hub.seed import DEMO_CANNED, DEMO_LABELS, seed_demo
from inbox.db import Database
from inbox.migrate import upgrade
from inbox.models import (
    AssignmentRule,
    CannedResponse,
    Conversation,
    ConversationLabel,
    Inbox,
    Label,
    Team,
)


async def test_the_demo_seeds_labels_canned_responses_teams_and_conversations(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, database_url="", redis_url="")
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    printed = await seed_demo(settings)
    assert "Agent logins" in printed
    again = await seed_demo(settings)  # a second start seeds nothing more
    assert again == printed
    db = Database(settings.sqlalchemy_url)
    try:
        async with db.read() as session:
            labels = sorted(row.name for row in await session.exec(select(Label)))
            assert labels == sorted(name for name, _, _ in DEMO_LABELS)
            assert all(row.description for row in await session.exec(select(Label)))
            rules = [r.name for r in await session.exec(select(AssignmentRule))]
            assert rules == ["Invoices and refunds"]
            shortcuts = sorted(c.shortcut for c in await session.exec(select(CannedResponse)))
            assert shortcuts == sorted(shortcut for shortcut, _, _ in DEMO_CANNED)
            teams = sorted(t.name for t in await session.exec(select(Team)))
            assert teams == ["Billing desk", "Garden support"]
            channels = sorted(i.channel for i in await session.exec(select(Inbox)))
            assert channels == ["api", "api", "webchat"]
            conversations = (await session.exec(select(func.count()).select_from(Conversation))
                             ).one()
            assert conversations == 3
            labelled = (await session.exec(select(func.count()).select_from(ConversationLabel))
                        ).one()
            assert labelled == 3
    finally:
        await db.close()
