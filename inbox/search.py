"""Search across messages, notes, conversation subjects and contacts: only what the agent sees.

PostgreSQL uses the generated `search_vector` columns and GIN indexes of migration 0005 with
the 'simple' configuration; SQLite uses that migration's FTS5 tables. User input never reaches
either query syntax: it is cut into words (runs of letters, digits and marks) that are quoted
one by one. Every word must match; the last one also matches as the start of a word.

Results come newest first (a message by when it arrived, a conversation by when it was
opened, a contact by when it was created) a keyset page at a time, so a common word costs a
walk down a time index until a page is full, and a rare one a GIN or FTS5 lookup.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any, Generic, Literal, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    column,
    exists,
    func,
    literal_column,
    or_,
    table,
    text,
    true,
    tuple_,
    union,
    union_all,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.orm import aliased
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import ContactView, ConversationView, MessageView
from inbox.agents import Principal
from inbox.db import is_postgresql
from inbox.models import (
    CONVERSATION_STATUSES,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationLabel,
    Inbox,
    Label,
    Message,
)
from inbox.queries import (
    MAX_ID,
    MAX_PAGE,
    InvalidQuery,
    decode_cursor,
    encode_cursor,
    is_row_id,
)
from inbox.views import contact_view, conversation_view, label_names, message_view

MAX_QUERY = 200  # characters
MAX_WORDS = 8
MAX_WORD = 100  # longer "words" are not words (PostgreSQL does not index them either)
PREFIX_FROM = 3  # a shorter last word must match whole: "a*" would match half the index
KINDS = ("message", "note", "conversation", "contact")
SNIPPET = 160
WINDOW = 20_000  # PostgreSQL: the newest rows read first (_newest; / MERGED_ROW in each inbox)
WALK_MOST = 2_000_000  # PostgreSQL: the most rows walked in time order (_walk_further)
WALK_PER_FETCH = 12  # PostgreSQL: rows walked for the cost of one the indexes offer
MERGED_MOST = 20  # PostgreSQL: the most inboxes walked one by one, merged (_walked)
MERGED_ROW = 4  # PostgreSQL: a row walked in one inbox's order costs this many in time order
# PostgreSQL: a word's first 3 to STARTS_MOST letters are lexemes too (">paym") in an index on
# switchboard_word_starts(search_vector) of these tables (migration 0023).
STARTS_MOST = 6
STARTS_INDEXED = ("messages",)
# PostgreSQL: every two words in a row are a lexeme too ("please help") in an index on
# switchboard_word_pairs(search_vector) of these tables (migration 0025).
PAIRS_INDEXED = ("messages",)
CONVERSATIONS = (250, 1000)  # PostgreSQL: filtered conversations read (_through_conversations)

M = TypeVar("M", bound=SQLModel)

Kind = Literal["message", "note", "conversation", "contact"]


class SearchHit(BaseModel):
    """One result: a message or note (with its conversation), a conversation, or a contact."""

    kind: Kind
    conversation: ConversationView | None = None
    contact: ContactView | None = None
    message: MessageView | None = None
    snippet: str  # plain text, never HTML
    # Where the words searched for are in the snippet: [start, end) in characters (code points).
    highlights: list[tuple[int, int]] = []


@dataclass(frozen=True)
class SearchFilter:
    """What the results are limited to, beyond what the agent may see."""

    inbox_id: int | None = None
    statuses: tuple[str, ...] = ()
    assignee: str | None = None  # "me", "none", or an agent id
    label: str | None = None
    channel: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    kinds: tuple[str, ...] = field(default=())  # empty: every kind

    def __post_init__(self) -> None:
        bad = [s for s in self.statuses if s not in CONVERSATION_STATUSES]
        if bad:
            raise InvalidQuery(f"unknown status {bad[0]!r}; use {', '.join(CONVERSATION_STATUSES)}")
        if self.assignee not in (None, "me", "none") and not is_row_id(str(self.assignee)):
            raise InvalidQuery("assignee must be 'me', 'none' or an agent id")
        for name, value, longest in (("label", self.label, 60), ("channel", self.channel, 40)):
            if value is not None and (len(value) > longest or not value.isprintable()):
                raise InvalidQuery(f"{name} must be at most {longest} printable characters")
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise InvalidQuery(f"unknown kind {unknown[0]!r}; use {', '.join(KINDS)}")
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise InvalidQuery("dates need a time zone")
        if self.since and self.until and self.since >= self.until:
            raise InvalidQuery("'from' must be before 'to'")

    @property
    def narrows_conversations(self) -> bool:
        """Whether conversations are filtered beyond the inboxes the agent sees."""
        return bool(self.statuses or self.assignee or self.label or self.inbox_id
                    or self.channel)

    def wants(self, kind: str) -> bool:
        """Whether results of this kind are asked for."""
        return not self.kinds or kind in self.kinds


def _is_word_char(char: str) -> bool:
    # The same characters SQLite's tokenizer keeps (migration 0005: L* N* Co M*).
    category = unicodedata.category(char)
    return category[0] in "LNM" or category == "Co"


def words(text: str) -> list[str]:
    """A text's words as the index cuts them: runs of letters, digits and marks, lower-cased."""
    found: list[str] = []
    current: list[str] = []
    for char in text + " ":
        if _is_word_char(char):
            current.append(char)
        elif current:
            found.append("".join(current).lower())
            current = []
    return found


@dataclass(frozen=True)
class Term:
    """One thing a query asks for: a word, or a phrase (words in a row), found or left out.

    Its words are letters, digits and marks only (see words()), so quoting them in either
    database's query syntax is safe.
    """

    words: tuple[str, ...]
    prefix: bool = False  # the last word also matches as the start of a word
    negated: bool = False  # rows with it are left out

    def postgresql(self) -> str:
        """The term in PostgreSQL's tsquery syntax."""
        parts = [f"'{w}'" for w in self.words]
        if self.prefix:
            parts[-1] += ":*"
        inner = " <-> ".join(parts)
        inner = f"({inner})" if len(parts) > 1 else inner
        return "!" + inner if self.negated else inner

    def sqlite(self) -> str:
        """The term as an FTS5 string (a phrase), without its negation."""
        return '"' + " ".join(self.words) + '"' + (" *" if self.prefix else "")


def parse(query: str) -> list[Term]:
    """What a query asks for, in the query language of search (docs/search.md).

    - Every word must be found, anywhere in the text, in any order: `refund policy`.
    - `"..."`: these words in a row; so are words joined by punctuation (`ada@example.com`,
      `555-0147`, `don't`).
    - `-word` or `-"..."`: leave out what has it.
    - The last word, while it is being typed (nothing after it, not even a space or a
      closing quote), also matches as the start of a word, from PREFIX_FROM letters on.

    Anything else is text: operators of either database are never interpreted. At most
    MAX_WORDS words count; a word longer than MAX_WORD characters is not a word.
    """
    terms: list[Term] = []
    count, at, end = 0, 0, len(query)
    while at < end:
        if query[at].isspace():
            at += 1
            continue
        negated = query[at] == "-" and at + 1 < end and not query[at + 1].isspace()
        at += negated
        if query[at] == '"':
            close = query.find('"', at + 1)
            chunk = query[at + 1:close if close != -1 else end]
            at = close + 1 if close != -1 else end
            typing = close == -1
        else:
            start = at
            while at < end and not query[at].isspace() and query[at] != '"':
                at += 1
            chunk, typing = query[start:at], at == end
        found = words(chunk)
        if not found or any(len(w) > MAX_WORD for w in found):
            continue
        if count + len(found) > MAX_WORDS:
            break
        count += len(found)
        prefix = (typing and not negated and bool(chunk) and _is_word_char(chunk[-1])
                  and len(found[-1]) >= PREFIX_FROM)
        terms.append(Term(tuple(found), prefix=prefix, negated=negated))
    return terms


def _finds(terms: list[Term]) -> bool:
    """Whether the terms ask for something to be found (not only for things left out)."""
    return any(not t.negated for t in terms)


def check_query(query: str) -> list[Term]:
    """What a query asks for, or InvalidQuery when it is too long."""
    if len(query) > MAX_QUERY:
        raise InvalidQuery(f"q may have at most {MAX_QUERY} characters")
    return parse(query)


@dataclass(frozen=True)
class _Match:
    """A full-text condition for one dialect, built from safe words."""

    postgresql: bool
    terms: list[Term]

    @property
    def query(self) -> str:
        """The terms in this database's query syntax."""
        if self.postgresql:
            return " & ".join(t.postgresql() for t in self.terms)
        found = " ".join(t.sqlite() for t in self.terms if not t.negated)
        return f"({found})" + "".join(f" NOT {t.sqlite()}" for t in self.terms if t.negated)

    def without_prefix(self) -> _Match | None:
        """The same words without the one being typed, when others remain to be found."""
        kept = [t for t in self.terms if not t.prefix]
        return _Match(self.postgresql, kept) if len(kept) < len(self.terms) and _finds(
            kept) else None

    def typed_start(self, source: str) -> Term | None:
        """The word being typed, when the index of word starts serves it (PostgreSQL).

        Only plain ASCII words: their lexemes are what PostgreSQL's lower-casing makes of
        them whatever the locale, so ">paym" is written here as the index stores it.
        """
        if not self.postgresql or source not in STARTS_INDEXED:
            return None
        typed = next((t for t in self.terms if t.prefix), None)
        if typed is None or len(typed.words) > 1 or typed.negated:
            return None
        word = typed.words[0]
        return typed if word.isascii() and word.isalnum() else None

    def pairs(self, source: str) -> list[str]:
        """The pairs of words in a row of the phrases, as the index of word pairs has them
        (PostgreSQL; none when no phrase can use it).

        A phrase being typed gives the pairs of its whole words; only plain ASCII words,
        for the same reason as typed_start.
        """
        if not self.postgresql or source not in PAIRS_INDEXED:
            return []
        found: set[str] = set()
        for term in self.terms:
            whole = term.words[:-1] if term.prefix else term.words
            if not term.negated and all(w.isascii() and w.isalnum() for w in whole):
                found.update(f"{a} {b}" for a, b in pairwise(whole))
        return sorted(found)

    def on(self, source: str, *, indexed: bool = True, exact: bool = True
           ) -> ColumnElement[bool]:
        """Rows of the table `source` (messages, conversations, contacts, contact_identities).

        `indexed=False` (PostgreSQL): a condition the GIN index cannot serve, checked on
        each row of a stretch the query reads anyway (see _newest). `exact=False`: only what
        the index looks up (a phrase's pairs of words, a word's first letters), for the
        planner's estimate (_offered).
        """
        pairs = self.pairs(source) if indexed else []
        if pairs:
            return self._on_pairs(source, pairs, exact=exact)
        typed = self.typed_start(source) if indexed else None
        if typed is not None:
            return self._on_starts(source, typed, exact=exact)
        if self.postgresql:
            tsquery = _tsquery(self.query)
            vector: Any = literal_column(f"{source}.search_vector")
            if not indexed:
                vector = func.coalesce(vector, literal_column("''::tsvector"))
            matches: ColumnElement[bool] = vector.op("@@")(tsquery)
            return matches
        fts = "fts_" + ("identities" if source == "contact_identities" else source)
        matching: Any = select(column("rowid")).select_from(table(fts)).where(
            literal_column(fts).op("MATCH")(bindparam(None, self.query, unique=True)))
        return literal_column(f"{source}.id").in_(matching)

    def _on_starts(self, source: str, typed: Term, *, exact: bool) -> ColumnElement[bool]:
        """The words and the start of the one being typed, in one lookup of the index of
        word starts: GIN then skips through every posting list, as it does for whole words,
        instead of collecting every row with a word so starting (docs/search.md)."""
        word = typed.words[0]
        starts = _lexemes(f"'>{word[:STARTS_MOST]}'")
        others = [t for t in self.terms if t is not typed]
        if others:
            starts = _tsquery(_Match(True, others).query).op("&&")(starts)
        found: ColumnElement[bool] = _derived("switchboard_word_starts", source).op("@@")(
            starts)
        if exact and len(word) > STARTS_MOST:  # the index knows its first letters only
            found = and_(found, self.on(source, indexed=False))
        return found

    def _on_pairs(self, source: str, pairs: list[str], *, exact: bool) -> ColumnElement[bool]:
        """Rows with every pair of words of the phrases, in one lookup of the index of word
        pairs: a phrase of two common words is as rare there as it is in the text, where
        the plain index offers every row with both words anywhere (docs/search.md). The
        whole query is then checked on each row fetched (the other words, and a phrase of
        three words, whose two pairs may stand apart)."""
        query = " & ".join(f"'{pair}'" for pair in pairs)  # words of letters and digits only
        found: ColumnElement[bool] = _derived("switchboard_word_pairs", source).op("@@")(
            _lexemes(query))
        return and_(found, self.on(source, indexed=False)) if exact else found


def _tsquery(query: str) -> Any:
    """PostgreSQL: a query in tsquery syntax (_Match.query), its words as the index has them."""
    return func.to_tsquery(literal_column("'simple'::regconfig"),
                           bindparam(None, query, unique=True))


def _lexemes(query: str) -> Any:
    """PostgreSQL: a tsquery of quoted lexemes taken as they are, never cut into words: what
    the indexes of word starts and pairs store (">paym", "please help")."""
    return sql_cast(bindparam(None, query, unique=True), TSQUERY)


def _derived(function: str, source: str) -> Any:
    """PostgreSQL: the table's vector through one of the functions an expression index is
    built on (switchboard_word_starts, migration 0023; switchboard_word_pairs, 0025)."""
    return getattr(func, function)(literal_column(f"{source}.search_vector"))


def _after(at: Any, row_id: Any, rank: int, cursor: tuple[datetime, int, int] | None) -> Any:
    """Keyset condition: rows of the source ranked `rank` that sort after the cursor."""
    if cursor is None:
        return true()
    c_at, c_rank, c_id = cursor
    if rank == c_rank:
        return tuple_(at, row_id) < tuple_(c_at, c_id)
    return at <= c_at if rank < c_rank else at < c_at


_SOURCES = ("m", "c", "p")  # messages and notes, conversations, contacts: the tie order


def _encode(at: datetime, rank: int, row_id: int) -> str:
    return f"{_SOURCES[rank]}.{encode_cursor(at, row_id)}"


def _decode(cursor: str) -> tuple[datetime, int, int]:
    source, _, rest = cursor.partition(".")
    if source not in _SOURCES:
        raise InvalidQuery("invalid cursor")
    at, row_id = _checked(decode_cursor(rest))
    return at, _SOURCES.index(source), row_id


def _checked(position: tuple[datetime, int]) -> tuple[datetime, int]:
    if not 0 <= position[1] <= MAX_ID:
        raise InvalidQuery("invalid cursor")
    return position


@dataclass
class _Scope:
    """What the principal may see, narrowed by the filters."""

    principal: Principal
    filters: SearchFilter
    inbox_ids: frozenset[int]
    label_ids: list[int] | None

    def conversation_conditions(self, *, indexed: bool = True) -> list[Any]:
        """Conditions on `conversations` for the inbox and conversation filters."""
        f = self.filters
        conditions: list[Any] = []
        if not self.principal.is_admin or f.inbox_id or f.channel:
            conditions.append(self.in_inboxes(col(Conversation.inbox_id), indexed=indexed))
        if f.statuses:
            conditions.append(col(Conversation.status).in_(f.statuses))
        if f.assignee == "me":
            conditions.append(Conversation.assignee_id == self.principal.agent_id)
        elif f.assignee == "none":
            conditions.append(col(Conversation.assignee_id).is_(None))
        elif f.assignee is not None:
            conditions.append(Conversation.assignee_id == int(f.assignee))
        if self.label_ids is not None:
            conditions.append(exists().where(
                col(ConversationLabel.conversation_id) == col(Conversation.id),
                col(ConversationLabel.label_id).in_(self.label_ids),
            ))
        return conditions

    def in_inboxes(self, inbox_id: Any, *, indexed: bool = True) -> Any:
        return _in_inboxes(inbox_id, self.inbox_ids, indexed=indexed)

    def dates(self, at: Any) -> list[Any]:
        """Conditions on a time column for the date range."""
        f = self.filters
        return ([at >= f.since] if f.since else []) + ([at < f.until] if f.until else [])


def _in_inboxes(inbox_id: Any, inbox_ids: frozenset[int], *, indexed: bool = True) -> Any:
    """The row is in one of the inboxes; `indexed=False`: without the inbox index.

    While reading a short stretch of the newest rows, a bitmap of every row of these inboxes
    (which PostgreSQL would otherwise build and AND with the stretch) costs far more than
    the stretch itself.
    """
    return (inbox_id if indexed else inbox_id + 0).in_(sorted(inbox_ids))


async def _scope(
    session: AsyncSession, principal: Principal, filters: SearchFilter
) -> _Scope | None:
    """The scope of a search, or None when nothing can match (no inbox, unknown label)."""
    inbox_ids = principal.inbox_ids
    if filters.inbox_id is not None:
        inbox_ids &= {filters.inbox_id}
    if filters.channel is not None and inbox_ids:
        inbox_ids &= frozenset(await session.exec(
            select(Inbox.id).where(Inbox.channel == filters.channel)))
    label_ids = None
    if filters.label is not None:  # by name, as the conversation list takes it
        label_ids = [i for i in await session.exec(
            select(Label.id).where(func.lower(Label.name) == filters.label.strip().lower()))
            if i is not None]
        if not label_ids:
            return None
    if not inbox_ids and not (principal.is_admin and not filters.narrows_conversations):
        return None
    return _Scope(principal, filters, frozenset(inbox_ids), label_ids)



async def _plan_each_time(session: AsyncSession) -> None:
    """PostgreSQL: plan these statements for their actual words, every time, with room.

    The statements are prepared; after five runs PostgreSQL may settle on one generic plan
    made without knowing the words, and a plan right for a common word (walk the time index
    until a page is full) walks the whole table for a rare one. A prefix ("deliv:*") is
    looked up as a bitmap of every matching row, which turns lossy, and slow to recheck,
    in the default 4 MB of work memory. A page read at random costs about what one read in
    order does (the hot part of the tables is in memory or on SSD): with the default cost of
    4, PostgreSQL built a bitmap of every message of the agent's inboxes (160 ms at a million)
    to spare itself fetching the few thousand rows with the words (40 ms). For this
    transaction only.
    """
    if is_postgresql(session):
        connection = await session.connection()
        await connection.execute(text(
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
            "set_config('work_mem', '32MB', true), set_config('random_page_cost', '1.1', true)"))


def _contact_conditions(scope: _Scope, match: _Match | None, *, indexed: bool) -> list[Any]:
    """Contacts matching the words (name, email, phone, any identity), visible and filtered."""
    conditions: list[Any] = [col(Contact.merged_into_id).is_(None)]
    identities: Any = select(ContactIdentity.contact_id).where(
        match.on("contact_identities")) if match is not None else None
    if match is not None and indexed:
        conditions.append(col(Contact.id).in_(union(
            select(Contact.id).where(match.on("contacts")), identities)))
    elif match is not None:  # checked on each contact of a stretch (see _newest)
        conditions.append(or_(match.on("contacts", indexed=False),
                              col(Contact.id).in_(identities)))
    visible = scope.conversation_conditions()
    if visible:  # seen through a conversation of a visible inbox (admins: every contact)
        conditions.append(
            exists().where(col(Conversation.contact_id) == col(Contact.id), *visible))
    return conditions + scope.dates(col(Contact.created_at))


Row = tuple[datetime, int, int, Any]  # (at, source rank, id, row)


def _same(entity: Any, query: Any) -> Any:
    return query


@dataclass(frozen=True)
class _Source(Generic[M]):
    """Where one kind of result comes from, for _newest."""

    model: type[M]
    at: str  # the time results are sorted by (then the id)
    # Conditions on the model's own table; indexed=False: see _Match.on and _Scope.in_inboxes.
    where: Callable[[bool], list[Any]]
    # Joins and conditions on other tables, given the entity the query selects.
    joined: Callable[[Any, Any], Any] = _same
    # The words and the table they are matched on (PostgreSQL), to price the GIN index:
    # what _older costs is about the rows it offers. None: walk WINDOW rows, then ten
    # times more, then the indexes.
    match: _Match | None = None
    table: str = ""
    # The inboxes the rows must be in, by the model's inbox_id, when `where` leaves them out
    # (None: `where` says which): PostgreSQL walks each inbox on its own, merged (_walked).
    inboxes: frozenset[int] | None = None

    def conditions(self, indexed: bool) -> list[Any]:
        """Every condition on the model's own table (see `where`)."""
        if self.inboxes is None:
            return self.where(indexed)
        model: Any = self.model
        return [*self.where(indexed),
                _in_inboxes(model.inbox_id, self.inboxes, indexed=indexed)]


async def _rows(
    session: AsyncSession, scope: _Scope, match: _Match,
    cursor: tuple[datetime, int, int] | None, limit: int,
) -> list[Row]:
    """Up to limit + 1 rows of each asked source, after the cursor."""
    f = scope.filters
    found: list[Row] = []
    bounds = [t for t in (f.until, cursor[0] if cursor else None) if t is not None]
    upper: datetime | Literal[False] | None = min(bounds) if bounds else None
    if not match.postgresql:
        upper = False
    message_kinds = [k for k in ("message", "note") if f.wants(k)]
    if message_kinds:
        at, mid = col(Message.accepted_at), col(Message.id)
        by_conversation = bool(f.statuses or f.assignee or f.label)

        def of_messages(indexed: bool) -> list[Any]:
            return [match.on("messages", indexed=indexed), col(Message.kind).in_(message_kinds),
                    *scope.dates(at), _after(at, mid, 0, cursor)]

        def with_conversation(message: Any, query: Any) -> Any:
            if not by_conversation:
                return query
            return query.join(Conversation, col(Conversation.id) == message.conversation_id
                              ).where(*scope.conversation_conditions())

        # Only the inboxes: messages carry theirs.
        inboxes = (scope.inbox_ids if not by_conversation and scope.conversation_conditions()
                   else None)
        messages = _Source(Message, "accepted_at", of_messages, with_conversation,
                           match, "messages", inboxes)
        if by_conversation and match.postgresql:
            rows = await _through_conversations(session, scope, messages, limit)
        else:
            rows = await _newest(session, messages, limit, upper)
        found += [(m.accepted_at, 0, m.id or 0, m) for m in rows]
    if f.wants("conversation"):
        at, cid = col(Conversation.created_at), col(Conversation.id)

        def of_conversations(indexed: bool) -> list[Any]:
            return [match.on("conversations", indexed=indexed),
                    *scope.conversation_conditions(indexed=indexed),
                    *scope.dates(at), _after(at, cid, 1, cursor)]

        found += [(c.created_at, 1, c.id or 0, c) for c in await _newest(
            session, _Source(Conversation, "created_at", of_conversations,
                             match=match, table="conversations"), limit, upper)]
    if f.wants("contact"):
        at, pid = col(Contact.created_at), col(Contact.id)

        def of_contacts(indexed: bool) -> list[Any]:
            return [*_contact_conditions(scope, match, indexed=indexed),
                    _after(at, pid, 2, cursor)]

        found += [(p.created_at, 2, p.id or 0, p) for p in await _newest(
            session, _Source(Contact, "created_at", of_contacts), limit, upper)]
    return found


async def _newest(
    session: AsyncSession, source: _Source[M], limit: int,
    upper: datetime | Literal[False] | None,
) -> list[M]:
    """The newest limit + 1 rows of a source, by its time then id.

    SQLite (`upper` False): one query. PostgreSQL (`upper`: the newest a row may be, or
    None): the planner, left to itself, walks the time index until a page is full for a
    common word, and walks the whole table when the word is rare in these inboxes or these
    months though common elsewhere; or it builds a bitmap of every row with the word, which
    is slow for a common word (and slower for a prefix or a phrase). So: first walk the
    newest WINDOW rows checking the words on each (of each of the agent's inboxes, merged,
    when they are few: _walked); then, while the matches found so far
    promise that walking on fills the page for less than the indexes would cost
    (_walk_further), walk further; what is still missing comes from the older rows, through
    the full-text and filter indexes only (a materialized set of every older match).
    """
    model: Any = source.model
    at = source.at
    column = getattr(model, at)
    if upper is False:
        query = source.joined(model, select(model).where(*source.conditions(True)))
        return list(await session.exec(query.order_by(*_newest_first(model, at))
                                       .limit(limit + 1)))
    found: list[M] = []
    newer: Any = None  # the edge of the stretch walked before, if any
    each = _each_inbox(source)
    weight = MERGED_ROW if each else 1  # what a row walked costs (_walk_further)
    depth: int | None = max(1, WINDOW // weight)
    offered: float | None = None  # the index's estimate, asked for once (_walk_further)
    while depth is not None:
        # The edge: the depth-th row from the newest (in the source's inboxes, walked one by
        # one; else of any inbox, counted down the time index alone).
        counted = _walked(source, [column, model.id],
                          [column <= upper] if upper is not None else [], each, depth
                          ).subquery()
        edge = (await session.exec(select(counted.c[at]).order_by(
            *_newest_first(counted.c, at)).offset(depth - 1).limit(1))).first()
        # The stretch in time order, then the other tables: the walk stops when the page
        # is full.
        stretch = _walked(source, [model], [
            *(source.where(False) if each else source.conditions(False)),
            *([column < newer] if newer is not None else []),
            *([column >= edge] if edge is not None else []),
        ], each, limit + 1 - len(found)).subquery("stretch")
        row = aliased(model, stretch)
        found += await session.exec(source.joined(row, select(row)).order_by(
            *_newest_first(row, at)).limit(limit + 1 - len(found)))
        if edge is None or len(found) > limit:
            return found  # the whole table was walked, or the page is full
        newer = edge
        depth, offered = await _walk_further(session, source, depth, weight, len(found),
                                             limit, offered)
    return found + await _older(session, source, limit + 1 - len(found), column < newer)


def _each_inbox(source: _Source[M]) -> list[int] | None:
    """The inboxes walked one by one (PostgreSQL), or None: one walk of every inbox's rows."""
    inboxes = source.inboxes
    return sorted(inboxes) if inboxes is not None and len(inboxes) <= MERGED_MOST else None


def _walked(source: _Source[M], what: list[Any], where: list[Any], each: list[int] | None,
            most: int) -> Any:
    """PostgreSQL: the newest rows of the source's table that hold `where`, for a query
    that reads them newest first and stops when it has enough (at most `most`).

    `each` None: one walk down the time index (OFFSET 0 keeps it a query of its own, so the
    other tables' conditions come after). Else one walk per inbox of `each` down
    ix_search_messages_inbox_at (migration 0024), merged: an agent who sees a few inboxes
    reads only their rows, not those of every inbox in between. Each walk is ordered and
    limited on its own; PostgreSQL merges ordered walks only so, never a plain UNION ALL.
    """
    model: Any = source.model
    order = _newest_first(model, source.at)
    if each is None:
        return select(*what).where(*where).order_by(*order).offset(0)
    return union_all(*(select(*what).where(model.inbox_id == i, *where).order_by(*order)
                       .limit(most) for i in each))


async def _walk_further(
    session: AsyncSession, source: _Source[M], depth: int, weight: int, found: int,
    limit: int, offered: float | None,
) -> tuple[int | None, float | None]:
    """How deep to walk next (rows from the newest), or None to go to the indexes; and the
    estimate of the rows the index offers (`offered`, asked for on first need).

    Walking costs about 0.3 µs a row in time order across inboxes, `weight` times that in
    one inbox's order (each row on a heap page of its own); the indexes cost about 3.5 µs
    for each row with all the words that they offer (any inbox), read from the heap and
    checked: walking on is worth it while it should fill the page for less than
    WALK_PER_FETCH rows in time order for each row offered, up to WALK_MOST of them.
    """
    if source.match is None:
        first = max(1, WINDOW // weight)
        return (first * 10 if depth == first and found * 10 >= limit else None), offered
    # Rows still to walk at the density seen so far (none seen: at least as many again as
    # a page would need at one match per stretch walked).
    need = depth * (limit + 1 - found) / found if found else depth * (limit + 1)
    if (depth + need) * weight > WALK_MOST:
        return None, offered
    if offered is None:
        offered = await _offered(session, source, source.match)
    if need * weight > offered * WALK_PER_FETCH:
        return None, offered
    return min(WALK_MOST // weight, depth + int(need * 1.25)), offered


async def _offered(session: AsyncSession, source: _Source[M], match: _Match) -> float:
    """PostgreSQL's estimate of how many rows of the source's table the full-text index
    offers for these words."""
    connection = await session.connection()
    query: Any = select(literal_column("1")).select_from(source.model).where(
        match.on(source.table, exact=False))
    # The words are letters, digits and marks in a tsquery (see Term): safe as a literal.
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    plan = (await connection.execute(text("EXPLAIN (FORMAT JSON) " + sql))).scalar_one()
    return float((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])


async def _older(session: AsyncSession, source: _Source[M], count: int, before: Any) -> list[M]:
    """The newest `count` rows of a source that hold `before`, through its indexes only.

    The set of every match is materialized first, so PostgreSQL cannot walk the time index
    hoping to fill a page early (see _newest).
    """
    conditions = source.conditions(True)
    if await _prefix_costs_more(session, source):
        # The whole words through the index; the word's start checked on each row.
        assert source.match is not None
        lean = source.match.without_prefix()
        assert lean is not None
        conditions = [*source.conditions(False), lean.on(source.table)]
    older = source.joined(source.model, select(source.model).where(*conditions, before)
                          ).cte("older").prefix_with("MATERIALIZED")
    row = aliased(source.model, older)
    return list(await session.exec(
        select(row).order_by(*_newest_first(row, source.at)).limit(count)))


async def _prefix_costs_more(session: AsyncSession, source: _Source[M]) -> bool:
    """Whether the GIN index should leave out the word's start (PostgreSQL).

    A word's start is collected as a bitmap of every row with a word so starting (about
    0.17 µs a row: 250 ms for "order:*" at ten million messages), whatever the other
    words; the other words alone offer rows that cost about 3.5 µs each to fetch and
    check. When those are far fewer, the index looks up the whole words only.
    """
    match = source.match
    lean = match.without_prefix() if match is not None else None
    if (match is None or lean is None or match.typed_start(source.table) is not None
            or match.pairs(source.table)):
        return False
    started = _Match(match.postgresql, [t for t in match.terms if t.prefix])
    return await _offered(session, source, lean) * 20 < await _offered(session, source, started)


async def _through_conversations(
    session: AsyncSession, scope: _Scope, messages: _Source[Message], limit: int,
) -> list[Message]:
    """PostgreSQL, messages of filtered conversations (status, assignee, label), newest first.

    A message is never newer than its conversation's last activity. So among the newest
    CONVERSATIONS[i] conversations that pass the filters, the messages newer than the last
    activity of the last of them are all there are; when they fill the page it is exact,
    read from at most that many conversations. Else the older ones come from the indexes.
    """
    at = col(Conversation.last_activity_at)
    edge = None
    for count in CONVERSATIONS:
        newest = list(await session.exec(
            select(Conversation.id, at).where(*scope.conversation_conditions())
            .order_by(at.desc(), col(Conversation.id).desc()).limit(count)))
        edge = newest[-1][1] if len(newest) == count else None
        # The words checked on each message of these conversations, never through the GIN
        # index: a bitmap of every message with a common word costs far more than these.
        query = select(Message).where(
            *messages.conditions(False),
            col(Message.conversation_id).in_([i for i, _ in newest]),
            *([col(Message.accepted_at) > edge] if edge is not None else []),
        ).order_by(*_newest_first(Message, "accepted_at")).limit(limit + 1)
        found = list(await session.exec(query))
        if edge is None or len(found) > limit:
            return found
    return found + await _older(session, messages, limit + 1 - len(found),
                                col(Message.accepted_at) <= edge)


def _newest_first(entity: Any, at: str) -> tuple[Any, Any]:
    return getattr(entity, at).desc(), entity.id.desc()


async def search(
    session: AsyncSession,
    principal: Principal,
    query: str,
    filters: SearchFilter,
    *,
    cursor: str | None = None,
    limit: int = 25,
) -> tuple[list[SearchHit], str | None]:
    """A page of results, newest first, and the cursor of the next page."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit must be between 1 and {MAX_PAGE}")
    terms = check_query(query)
    position = _decode(cursor) if cursor else None
    scope = await _scope(session, principal, filters)
    if not _finds(terms) or scope is None:
        return [], None
    match = _Match(is_postgresql(session), terms)
    await _plan_each_time(session)
    found = sorted(await _rows(session, scope, match, position, limit),
                   key=lambda r: (r[0], r[1], r[2]), reverse=True)
    page = found[:limit]
    next_cursor = _encode(*page[-1][:3]) if len(found) > limit else None
    return await _hits(session, [r[3] for r in page], terms), next_cursor


async def _hits(session: AsyncSession, rows: list[Any], terms: list[Term]) -> list[SearchHit]:
    """The public views of a page's rows, loading their conversations in one query."""
    ids = {r.conversation_id for r in rows if isinstance(r, Message)}
    ids |= {r.id or 0 for r in rows if isinstance(r, Conversation)}
    conversations = await conversation_views(session, ids)
    hits = []
    for row in rows:
        if isinstance(row, Message):
            excerpt, spans = snippet(row.text, terms)
            hits.append(SearchHit(
                kind=cast(Kind, row.kind), conversation=conversations[row.conversation_id],
                message=message_view(row), snippet=excerpt, highlights=spans))
        elif isinstance(row, Conversation):
            excerpt, spans = snippet(row.subject or "", terms)
            hits.append(SearchHit(kind="conversation", conversation=conversations[row.id or 0],
                                  snippet=excerpt, highlights=spans))
        else:
            view = await contact_view(session, row)
            excerpt, spans = snippet(_contact_snippet(view), terms)
            hits.append(SearchHit(kind="contact", contact=view, snippet=excerpt,
                                  highlights=spans))
    return hits


async def conversation_views(
    session: AsyncSession, ids: set[int]
) -> dict[int, ConversationView]:
    """The views of some conversations by id, in one query."""
    if not ids:
        return {}
    rows = await session.exec(
        select(Conversation, Inbox.channel, Contact.name)
        .join(Inbox, col(Inbox.id) == col(Conversation.inbox_id))
        .join(Contact, col(Contact.id) == col(Conversation.contact_id))
        .where(col(Conversation.id).in_(sorted(ids)))
    )
    found = list(rows)
    labels = await label_names(session, sorted(ids))
    return {c.id or 0: conversation_view(c, channel=ch, contact_name=n,
                                         labels=labels.get(c.id or 0, ()))
            for c, ch, n in found}


Span = tuple[int, int]  # [start, end) in characters


def _lowered(text: str) -> str:
    """`text` lower-cased character by character, so offsets stay those of `text`."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _found_at(lowered: str, at: int, term: Term) -> int | None:
    """Where the term found at `at` ends, if it is there as whole words (see words())."""
    if at and _is_word_char(lowered[at - 1]):
        return None
    for i, word in enumerate(term.words):
        if i:  # the next word, after at least one character that is not part of a word
            start = at
            while at < len(lowered) and not _is_word_char(lowered[at]):
                at += 1
            if at == start:
                return None
        if not lowered.startswith(word, at):
            return None
        at += len(word)
        last = i == len(term.words) - 1
        if last and term.prefix:
            while at < len(lowered) and _is_word_char(lowered[at]):
                at += 1
        elif at < len(lowered) and _is_word_char(lowered[at]):
            return None
    return at


def _occurrences(lowered: str, terms: list[Term], most: int = 500) -> list[tuple[int, int, int]]:
    """(start, end, which term) of the wanted terms in a lower-cased text, in text order."""
    found: list[tuple[int, int, int]] = []
    for index, term in enumerate(terms):
        if term.negated:
            continue
        at = lowered.find(term.words[0])
        while at != -1 and len(found) < most:
            end = _found_at(lowered, at, term)
            if end is not None:
                found.append((at, end, index))
            at = lowered.find(term.words[0], at + 1)
    return sorted(found)


def _best(found: list[tuple[int, int, int]]) -> tuple[int, int]:
    """The stretch of at most SNIPPET characters that holds the most different terms."""
    best, best_count, first = (0, 0), 0, 0
    counts: dict[int, int] = {}
    for last, (_, end, term) in enumerate(found):
        counts[term] = counts.get(term, 0) + 1
        while end - found[first][0] > SNIPPET:
            gone = found[first][2]
            counts[gone] -= 1
            if not counts[gone]:
                del counts[gone]
            first += 1
        if len(counts) > best_count:
            best, best_count = (found[first][0], found[last][1]), len(counts)
    return best


def snippet(text: str, terms: list[Term]) -> tuple[str, list[Span]]:
    """A short plain-text excerpt of `text` around its best match, and where the terms are in it.

    The best match is the stretch with the most different terms found (a phrase as a
    whole), the first such; the excerpt begins and ends on a word. The spans are character
    offsets in the excerpt (Unicode code points), for highlighting.
    """
    flat = " ".join(text.split())
    lowered = _lowered(flat)
    found = _occurrences(lowered, terms)
    start, end = 0, len(flat)
    if len(flat) > SNIPPET:
        first, last = _best(found) if found else (0, 0)
        start = max(0, min(first - SNIPPET // 3, first - (SNIPPET - (last - first)) // 2))
        if start:
            start = flat.find(" ", start, first) + 1 or start  # begin on a word
        end = min(len(flat), start + SNIPPET)
        if end < len(flat) and flat.rfind(" ", start, end) > max(start, last - 1):
            end = flat.rfind(" ", start, end)  # end on a word
    shift = (1 if start else 0) - start
    spans = [(s + shift, e + shift) for s, e, _ in found if s >= start and e <= end]
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else ""), spans


def _contact_snippet(view: ContactView) -> str:
    parts = [view.name, view.email, view.phone]
    parts += [i.value for i in view.identities if i.value not in parts]
    return " · ".join(p for p in parts if p)[:SNIPPET]


async def search_contacts(
    session: AsyncSession,
    principal: Principal,
    query: str | None,
    *,
    cursor: str | None = None,
    limit: int = 25,
) -> tuple[list[ContactView], str | None]:
    """Contacts the principal may see (matching `query` if given), newest first."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit must be between 1 and {MAX_PAGE}")
    terms = check_query(query) if query is not None else None
    position = _checked(decode_cursor(cursor)) if cursor else None
    scope = await _scope(session, principal, SearchFilter())
    if (terms is not None and not _finds(terms)) or scope is None:
        return [], None
    match = _Match(is_postgresql(session), terms) if terms else None
    await _plan_each_time(session)
    at, pid = col(Contact.created_at), col(Contact.id)

    def of_contacts(indexed: bool) -> list[Any]:
        return [*_contact_conditions(scope, match, indexed=indexed),
                *([tuple_(at, pid) < tuple_(*position)] if position else [])]

    windowed = match is not None and match.postgresql  # without words: a plain walk
    rows = await _newest(session, _Source(Contact, "created_at", of_contacts), limit,
                         (position[0] if position else None) if windowed else False)
    page = rows[:limit]
    next_cursor = (encode_cursor(page[-1].created_at, page[-1].id or 0)
                   if len(rows) > limit else None)
    return [await contact_view(session, c) for c in page], next_cursor
