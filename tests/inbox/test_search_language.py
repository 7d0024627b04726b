"""The search query language finds the same rows on SQLite (FTS5) and PostgreSQL (tsvector),
and each hit says where its words are in the snippet."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inbox import search
from inbox.agents import Principal
from inbox.db import Database
from inbox.migrate import upgrade
from inbox.models import Contact, Conversation, Inbox, Message
from tests.services import PostgresDatabase

TEXTS = [
    "The refund policy changed last week",
    "Refund issued; see our policy page",
    "Policy: no refunds after thirty days",
    "Where is my parcel? The delivery was late",
    "Delivered to the neighbour, thanks",
    "Please write to ada@example.com about the invoice",
    "Call me on +1 202-555-0147 after six",
    "Don't close this ticket yet",
    "Le remboursement est arrivé, merci",
    "नमस्ते, मेरा ऑर्डर कहाँ है",
    "予約の確認をお願いします",
    "refundable deposit only",
    "Please help, then help me later",
]

# query -> the texts it finds (by index in TEXTS), newest first.
CASES: dict[str, list[int]] = {
    # Every word, anywhere, any order; the last one also as a word's start while typed.
    "refund policy": [1, 0],
    "policy refund": [2, 1, 0],  # "refunds": the start of a word
    "refund": [11, 2, 1, 0],
    "refund ": [1, 0],  # a space after it: the word is finished
    "REFUND Policy ": [1, 0],
    "deliv": [4, 3],
    "refund polic": [1, 0],  # PostgreSQL: words and a start in one index lookup
    "deliver": [4, 3],
    "delivere": [4],  # longer than the starts PostgreSQL indexes: checked on each row
    "-parcel deliv": [4],
    "refundab": [11],
    "de": [],  # too short to be a word's start: "de" as a whole word only
    # A phrase: these words in a row, punctuation between them does not count.
    '"refund policy"': [0],
    '"policy refund"': [],
    '"refund issued see"': [1],
    '"the deliv': [3],  # an unclosed phrase while typing: its last word's start
    '"the deliv"': [],
    # PostgreSQL looks a phrase up by its pairs of words in a row, then checks it whole.
    '"then help me"': [12],
    '"please help me"': [],  # its two pairs are there, apart
    '"help then help me"': [12],
    '"refund policy" week': [0],
    '"refund policy" page': [],
    '"refund policy" chan': [0],
    '"refund policy cha': [0],
    '"est arrivé"': [8],
    # Words joined by punctuation are a phrase.
    "ada@example.com": [5],
    "example.com": [5],
    "ada@example.org": [],
    "202-555-0147": [6],
    "555-0147-202": [],
    "don't": [7],
    # Leave out.
    "refund -changed": [1],
    'policy -"refund policy"': [2, 1],
    "-refund policy": [2],
    "-refund": [],  # nothing to find
    # Any script, accents kept.
    "arrivé": [8],
    "arrive ": [],
    "ऑर्डर": [9],
    "नमस्ते": [9],
    # Operators of either database are text, never syntax.
    "refund OR parcel": [],
    "refund AND policy NOT": [],
    "refund & policy": [1, 0],
    "policy*": [2, 1, 0],
    "pol:*": [],  # not being typed: a whole word
    "NEAR(refund policy)": [],  # "near" and "refund" in a row
    "(refund": [11, 2, 1, 0],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at the newest schema."""
    if request.param == "sqlite":
        found = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
        upgrade(found)
        yield found
        return
    db = PostgresDatabase.create()
    try:
        upgrade(db.sqlalchemy_url)
        yield db.sqlalchemy_url
    finally:
        db.drop()


async def _seed(db: Database) -> tuple[Principal, list[int]]:
    async with db.write() as session:
        inbox, other = Inbox(name="Mail", channel="email"), Inbox(name="Other", channel="api")
        contact = Contact(name="Customer")
        session.add_all([inbox, other, contact])
        await session.flush()
        assert inbox.id and other.id and contact.id
        conversation = Conversation(inbox_id=inbox.id, contact_id=contact.id)
        elsewhere = Conversation(inbox_id=other.id, contact_id=contact.id)
        session.add_all([conversation, elsewhere])
        await session.flush()
        start = datetime(2026, 3, 1, tzinfo=UTC)
        rows = [Message(conversation_id=conversation.id or 0, inbox_id=inbox.id, direction="in",
                        text=t, accepted_at=start + timedelta(minutes=i))
                for i, t in enumerate(TEXTS)]
        # The same words in an inbox the agent does not see are never found.
        rows += [Message(conversation_id=elsewhere.id or 0, inbox_id=other.id, direction="in",
                         text=t, accepted_at=start + timedelta(hours=1)) for t in TEXTS]
        session.add_all(rows)
        await session.flush()
        ids = [m.id or 0 for m in rows[:len(TEXTS)]]
        principal = Principal(agent_id=1, role="agent", inbox_ids=frozenset({inbox.id}),
                              csrf_token="")
    return principal, ids


@pytest.mark.parametrize("through", ["walk", "indexes"])
def test_the_query_language_finds_the_same_on_both_databases(
    url: str, through: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if through == "indexes":  # PostgreSQL: past the newest row, only the indexes (_older)
        monkeypatch.setattr(search, "WINDOW", 1)
        monkeypatch.setattr(search, "WALK_MOST", 1)

    async def check() -> None:
        db = Database(url)
        try:
            principal, ids = await _seed(db)
            wrong = {}
            for query, expected in CASES.items():
                async with db.read() as session:
                    hits, _ = await search.search(
                        session, principal, query, search.SearchFilter(kinds=("message",)))
                found = [ids.index(h.message.id or 0) for h in hits if h.message is not None]
                if found != expected:
                    wrong[query] = found
            assert wrong == {}
        finally:
            await db.close()

    asyncio.run(check())


def test_hits_say_where_the_words_are_in_the_snippet(url: str) -> None:
    async def marked(query: str) -> list[list[str]]:
        db = Database(url)
        try:
            async with db.read() as session:
                hits, _ = await search.search(session, principal, query, search.SearchFilter())
            return [[h.snippet[a:b] for a, b in h.highlights] for h in hits]
        finally:
            await db.close()

    async def seed() -> Principal:
        db = Database(url)
        try:
            return (await _seed(db))[0]
        finally:
            await db.close()

    principal = asyncio.run(seed())
    assert asyncio.run(marked("refund polic")) == [["Refund", "policy"],
                                                  ["refund", "policy"]]
    assert asyncio.run(marked('"the refund policy"')) == [["The refund policy"]]
    assert asyncio.run(marked("ada@example.com")) == [["ada@example.com"]]
    assert asyncio.run(marked("नमस्")) == [["नमस्ते"]]


def test_a_long_text_is_cut_around_its_best_match() -> None:
    filler = "nothing to see here " * 30
    text = f"the refund came. {filler} refund and policy together. {filler} policy alone."
    excerpt, spans = search.snippet(text, search.parse("policy refund"))
    assert len(excerpt) <= search.SNIPPET + 2
    assert excerpt.startswith("…") and excerpt.endswith("…")
    assert [excerpt[a:b] for a, b in spans] == ["refund", "policy"]
    assert "refund and policy together" in excerpt
    # Emoji and other characters outside the BMP count as one character each.
    excerpt, spans = search.snippet("🙂🙂 refund 🙂 policy", search.parse("refund policy "))
    assert [excerpt[a:b] for a, b in spans] == ["refund", "policy"]
    assert spans == [(3, 9), (12, 18)]
    # Nothing found (a contact matched through a digit-only phone): the start, unmarked.
    excerpt, spans = search.snippet("x " * 200, search.parse("refund"))
    assert spans == [] and excerpt.startswith("x x") and len(excerpt) <= search.SNIPPET + 1
