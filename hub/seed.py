"""Assembly helpers that create users and demo data through the inbox domain."""

from __future__ import annotations

from sqlmodel import select

from channels.webchat import WebchatChannel
from config import Settings
from hub.types import Identity, InboundMessage
from inbox.agents import AgentError, add_to_inbox, add_to_team, create_agent
from inbox.context import InboxContext
from inbox.db import Database
from inbox.inboxes import create_inbox
from inbox.ingest import ingest
from inbox.models import Agent, Inbox, Team, TeamInbox

# Demo credentials are printed on purpose: the demo is for trying Switchboard locally.
DEMO_PASSWORD = "switchboard-demo"  # noqa: S105
DEMO_API_SECRET = "demo-api-secret"  # noqa: S105
DEMO_AGENTS = (
    ("admin@demo.switchboard.test", "Ada Admin", "admin"),
    ("lead@demo.switchboard.test", "Lee Lead", "lead"),
    ("agent@demo.switchboard.test", "Alex Agent", "agent"),
)


async def create_user(
    settings: Settings, *, email: str, name: str, password: str, role: str, inbox_ids: list[int]
) -> tuple[int, str]:
    """Create an agent and add them to inboxes; return their id and stored email."""
    db = Database(settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            agent = await create_agent(session, email=email, name=name, password=password,
                                       role=role)
            assert agent.id is not None
            for inbox_id in inbox_ids:
                if await session.get(Inbox, inbox_id) is None:
                    raise AgentError(f"no inbox with id {inbox_id}")
                await add_to_inbox(session, agent_id=agent.id, inbox_id=inbox_id)
            return agent.id, agent.email
    finally:
        await db.close()


async def seed_demo(settings: Settings) -> str:
    """Demo agents, an API inbox and a few conversations (once); return what to print."""
    from hub.app import build_bus

    db = Database(settings.sqlalchemy_url)
    bus = build_bus(settings)
    await bus.start()
    try:
        async with db.write() as session:
            seeded = (await session.exec(select(Agent).where(Agent.email == DEMO_AGENTS[0][0]))
                      ).first()
            if seeded is None:
                inbox = await create_inbox(
                    session, name="Demo API", channel="api",
                    settings={"secret": DEMO_API_SECRET},
                )
                website = await create_inbox(
                    session, name="Acme Garden Supplies", channel="webchat",
                    settings={**WebchatChannel().default_settings(),
                              "greeting": "Hi! Questions about your garden order?"},
                )
                assert inbox.id is not None and website.id is not None
                # One team on both inboxes: the demo lead (a member) leads it.
                team = Team(name="Garden support")
                session.add(team)
                await session.flush()
                assert team.id is not None
                session.add_all([TeamInbox(team_id=team.id, inbox_id=i)
                                 for i in (inbox.id, website.id)])
                for email, name, role in DEMO_AGENTS:
                    agent = await create_agent(session, email=email, name=name,
                                               password=DEMO_PASSWORD, role=role)
                    assert agent.id is not None
                    for member_of in (inbox.id, website.id):
                        await add_to_inbox(session, agent_id=agent.id, inbox_id=member_of)
                    await add_to_team(session, agent_id=agent.id, team_id=team.id)
            inbox_row = (await session.exec(select(Inbox).where(Inbox.name == "Demo API"))).one()
        inbox_id = inbox_row.id
        assert inbox_id is not None
        if seeded is None:
            ctx = InboxContext(settings=settings, db=db, bus=bus)
            samples = [
                ("grace@example.com", "Grace Hopper", "Hi! My order #1042 has not arrived yet."),
                ("linus@example.com", "Linus T.", "Can I change the delivery address?"),
                ("grace@example.com", "Grace Hopper", "It was due last Friday."),
            ]
            for n, (email, name, text) in enumerate(samples):
                await ingest(ctx, InboundMessage(
                    channel="api", inbox_id=inbox_id, external_id=f"demo-{n}",
                    sender=Identity(kind="email", value=email, display_name=name), text=text,
                ))
    finally:
        await bus.close()
        await db.close()
    logins = "\n".join(f"  {role:<6} {email}  password: {DEMO_PASSWORD}"
                       for email, _, role in DEMO_AGENTS)
    return (
        f"Switchboard demo at {settings.base_url}\n"
        f"Website with the chat widget: {settings.base_url}/demo\n"
        f"Agent logins:\n{logins}\n"
        f"API inbox {inbox_id}: POST {settings.base_url}/webhooks/api/{inbox_id} "
        f"signed with secret {DEMO_API_SECRET!r} (see README)."
    )
