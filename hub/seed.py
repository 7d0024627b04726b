"""Assembly helpers that create users and demo data through the inbox domain."""

from __future__ import annotations

from sqlmodel import select

from channels.api import ApiChannel
from channels.base import secret_names
from channels.webchat import WebchatChannel
from config import Settings
from hub.types import Identity, InboundMessage
from inbox.agents import AgentError, Principal, add_to_inbox, add_to_team, create_agent
from inbox.automation_rules import AutomationRuleCreate
from inbox.automation_rules import create_rule as create_automation
from inbox.canned import create_canned
from inbox.context import InboxContext
from inbox.db import Database
from inbox.inboxes import create_inbox
from inbox.ingest import ingest
from inbox.labels import create_label, set_conversation_labels, set_priority
from inbox.models import Agent, Inbox, Team, TeamInbox
from inbox.rules import RuleCreate, create_rule
from inbox.sla_policies import SlaPolicyCreate, create_policy
from inbox.teams import TeamCreate, create_team

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


DEMO_LABELS = (
    ("VIP", "#d9480f", "Customers with a yearly plan: answer first"),
    ("Billing", "#1c7ed6", "Invoices, refunds, double charges"),
    ("Delivery", "#2f9e44", "Where is my order, address changes, returns"),
    ("Bug", "#c92a2a", "Something on the website or in the app is broken"),
)
DEMO_AUTOMATION = (
    ("Something is broken", ["broken", "error", "crash", "bug"],
     [{"type": "add_label", "label": "Bug"}, {"type": "set_priority", "priority": "high"}]),
    ("Double charges", ["charged twice", "double charge", "refund"],
     [{"type": "add_label", "label": "Billing"},
      {"type": "add_note", "text": "Check the payment provider's log before answering."}]),
)
DEMO_CANNED = (
    ("hello", "Greeting", "Hi {{contact.first_name}}, thanks for writing to Acme Garden "
     "Supplies! {{agent.first_name}} here, let me check that for you."),
    ("tracking", "Tracking link", "Your parcel is on its way: you can follow it at "
     "https://tracking.example/acme. It usually arrives within 2 working days."),
    ("thanks", "Closing", "Glad I could help, {{contact.first_name}}. Have a lovely day in "
     "the garden!"),
)


async def _seed_story(ctx: InboxContext, api_inbox_id: int) -> None:
    """What makes every feature show something: labels, canned responses, a second team, a
    WhatsApp-like inbox (through the API channel: the real one needs Twilio credentials),
    and conversations by email, phone and chat, some labelled and prioritised."""
    async with ctx.db.write() as session:
        admin = (await session.exec(select(Agent).where(Agent.email == DEMO_AGENTS[0][0]))).one()
        lead = (await session.exec(select(Agent).where(Agent.email == DEMO_AGENTS[1][0]))).one()
        phone_inbox = await create_inbox(
            session, name="WhatsApp (demo, API channel)", channel="api",
            settings=ctx.secrets.seal_settings({"secret": DEMO_API_SECRET + "-whatsapp"},
                                               secret_names(ApiChannel.settings)))
        assert admin.id is not None and lead.id is not None and phone_inbox.id is not None
        for agent in await session.exec(select(Agent)):
            await add_to_inbox(session, agent_id=agent.id or 0, inbox_id=phone_inbox.id)
        everything = frozenset({api_inbox_id, phone_inbox.id})
        principal = Principal(agent_id=admin.id, role="admin", inbox_ids=everything,
                              csrf_token="")
        for shortcut, title, text in DEMO_CANNED:
            await create_canned(session, principal, shortcut=shortcut, title=title, text=text)
    for name, color, description in DEMO_LABELS:
        await create_label(ctx, principal, name=name, color=color, description=description)
    billing = await create_team(ctx, principal, TeamCreate(
        name="Billing desk", member_ids=[lead.id], inbox_ids=[api_inbox_id, phone_inbox.id]))
    await create_rule(ctx, principal, RuleCreate(
        name="Invoices and refunds", inbox_id=phone_inbox.id, team_id=billing.id,
        conditions=[{"field": "keywords", "op": "contains_any",
                     "value": ["invoice", "refund", "charged"]}]), channels=("api",))
    await create_policy(ctx, principal, SlaPolicyCreate(
        name="Answer within the hour", first_response_minutes=60, next_response_minutes=120,
        resolution_minutes=24 * 60))
    for name, words, actions in DEMO_AUTOMATION:
        await create_automation(ctx, principal, AutomationRuleCreate(
            name=name, trigger="message_received", conditions=[
                {"field": "text", "op": "contains_any", "value": words}],
            actions=actions), channels=("api",))
    samples = [
        (api_inbox_id, Identity(kind="email", value="grace@example.com",
                                display_name="Grace Hopper"),
         "Hi! My order #1042 has not arrived yet.", {"subject": "Order #1042 missing"}),
        (api_inbox_id, Identity(kind="email", value="linus@example.com", display_name="Linus T."),
         "Can I change the delivery address?", {"subject": "Delivery address"}),
        (api_inbox_id, Identity(kind="email", value="grace@example.com",
                                display_name="Grace Hopper"),
         "It was due last Friday.", {"subject": "Order #1042 missing"}),
        (phone_inbox.id, Identity(kind="phone", value="+4915112345678",
                                  display_name="Mila Novak"),
         "Hallo! Is your rose fertiliser organic? I was charged twice for invoice 2026-117.",
         {}),
    ]
    opened: list[int] = []
    for n, (inbox_id, sender, text, metadata) in enumerate(samples):
        done = await ingest(ctx, InboundMessage(
            channel="api", inbox_id=inbox_id, external_id=f"demo-{n}", sender=sender, text=text,
            metadata=metadata))
        if done.conversation_id is not None and done.conversation_id not in opened:
            opened.append(done.conversation_id)
    grace, _, mila = opened
    await set_conversation_labels(ctx, principal, conversation_id=grace,
                                  names=["Delivery", "VIP"])
    await set_priority(ctx, principal, conversation_id=grace, priority="high")
    await set_conversation_labels(ctx, principal, conversation_id=mila, names=["Billing"])


async def seed_demo(settings: Settings) -> str:
    """Demo agents, an API inbox and a few conversations (once); return what to print."""
    from hub.app import build_bus

    db = Database(settings.sqlalchemy_url)
    bus = build_bus(settings)
    await bus.start()
    ctx = InboxContext(settings=settings, db=db, bus=bus)
    try:
        async with db.write() as session:
            seeded = (await session.exec(select(Agent).where(Agent.email == DEMO_AGENTS[0][0]))
                      ).first()
            if seeded is None:
                inbox = await create_inbox(
                    session, name="Demo API", channel="api",
                    settings=ctx.secrets.seal_settings({"secret": DEMO_API_SECRET},
                                                       secret_names(ApiChannel.settings)),
                )
                website = await create_inbox(
                    session, name="Acme Garden Supplies", channel="webchat",
                    settings=ctx.secrets.seal_settings(
                        {**WebchatChannel().default_settings(),
                         "greeting": "Hi! Questions about your garden order?"},
                        secret_names(WebchatChannel.settings)),
                )
                assert inbox.id is not None and website.id is not None
                website.csat_survey = True  # resolved chats ask the visitor for 1-5
                session.add(website)
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
            await _seed_story(ctx, inbox_id)
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
