"""search

Full-text search over messages and notes, conversation subjects, contacts and their
identities (used by inbox/search.py).

- PostgreSQL: a generated `search_vector` tsvector column on each searched table (the
  'simple' configuration: no stemming, so every language works; punctuation that the
  default parser would glue into e-mail, host or number tokens is turned into spaces first,
  so "ada@example.com" is found by "ada" or "example"), a GIN index on it, and b-tree indexes
  on the time each result is sorted by.
- SQLite: FTS5 tables `fts_*` (unicode61, marks count as letters so Indic scripts stay whole)
  kept in sync by triggers. A later migration that rebuilds one of the source tables with
  batch_alter_table drops its triggers with it and must create them again.

Every object here is named `search_vector`, `ix_search_*`, `fts_*`: inbox/migrations/env.py
keeps them out of `alembic check`, since the models do not describe them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The default parser makes one token of "ada@example.com", "example.com/x", "+1-415", "3.14";
# with these characters as spaces it splits them into words, as SQLite's unicode61 does.
_GLUE = "@.-+/:\\\\"


def _words(expr: str) -> str:
    return f"to_tsvector('simple'::regconfig, translate({expr}, E'{_GLUE}', '{' ' * 7}'))"


_PG_VECTORS = {
    # Activity lines ("Alice assigned Bob") are not searched; text beyond 100,000 characters
    # is not indexed (a tsvector holds at most 1 MB).
    "messages": "CASE WHEN kind = 'activity' THEN NULL ELSE "
                + _words("left(text, 100000)") + " END",
    "conversations": _words("coalesce(subject, '')"),
    "contacts": _words(
        "coalesce(name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(phone, '')"
        " || ' ' || regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g')"
    ),
    "contact_identities": _words("value || ' ' || coalesce(display_name, '')"),
}
# The time each kind of result is sorted by (newest first), for keyset pages.
_PG_ORDER = {
    "messages": "accepted_at",
    "conversations": "created_at",
    "contacts": "created_at",
}

_TOKENIZE = "tokenize=\"unicode61 remove_diacritics 0 categories 'L* N* Co M*'\""
_CONTACT_BODY = (
    "coalesce({r}.name, '') || ' ' || coalesce({r}.email, '') || ' ' || coalesce({r}.phone, '')"
    " || ' ' || replace(replace(replace(replace(replace(replace(coalesce({r}.phone, ''),"
    " ' ', ''), '-', ''), '(', ''), ')', ''), '.', ''), '+', '')"
)


def _external(name: str, table: str, columns: list[str], when: str = "1") -> list[str]:
    """An FTS5 table indexing `columns` of `table` (content stays there), and its triggers."""
    cols = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    w_new, w_old = when.format(r="new"), when.format(r="old")
    return [
        f"CREATE VIRTUAL TABLE {name} USING fts5({cols}, content='{table}', "
        f"content_rowid='id', {_TOKENIZE})",
        f"CREATE TRIGGER {name}_ai AFTER INSERT ON {table} WHEN {w_new} BEGIN "
        f"INSERT INTO {name}(rowid, {cols}) VALUES (new.id, {new}); END",
        f"CREATE TRIGGER {name}_ad AFTER DELETE ON {table} WHEN {w_old} BEGIN "
        f"INSERT INTO {name}({name}, rowid, {cols}) VALUES ('delete', old.id, {old}); END",
        f"CREATE TRIGGER {name}_au AFTER UPDATE OF {cols}{_kind(when)} ON {table} BEGIN "
        f"INSERT INTO {name}({name}, rowid, {cols}) SELECT 'delete', old.id, {old} "
        f"WHERE {w_old}; "
        f"INSERT INTO {name}(rowid, {cols}) SELECT new.id, {new} WHERE {w_new}; END",
        f"INSERT INTO {name}(rowid, {cols}) SELECT id, {cols} FROM {table} "
        f"WHERE {when.format(r=table)}",
    ]


def _kind(when: str) -> str:
    return ", kind" if "kind" in when else ""


def _sqlite_statements() -> list[str]:
    body_new, body_c = _CONTACT_BODY.format(r="new"), _CONTACT_BODY.format(r="contacts")
    return [
        *_external("fts_messages", "messages", ["text"], "{r}.kind != 'activity'"),
        *_external("fts_conversations", "conversations", ["subject"]),
        *_external("fts_identities", "contact_identities", ["value", "display_name"]),
        # A contact's row is the searched text plus the phone's digits: a table of its own.
        f"CREATE VIRTUAL TABLE fts_contacts USING fts5(body, {_TOKENIZE})",
        "CREATE TRIGGER fts_contacts_ai AFTER INSERT ON contacts BEGIN "
        f"INSERT INTO fts_contacts(rowid, body) VALUES (new.id, {body_new}); END",
        "CREATE TRIGGER fts_contacts_ad AFTER DELETE ON contacts BEGIN "
        "DELETE FROM fts_contacts WHERE rowid = old.id; END",
        "CREATE TRIGGER fts_contacts_au AFTER UPDATE OF name, email, phone ON contacts BEGIN "
        f"UPDATE fts_contacts SET body = {body_new} WHERE rowid = new.id; END",
        f"INSERT INTO fts_contacts(rowid, body) SELECT id, {body_c} FROM contacts",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, vector in _PG_VECTORS.items():
            op.execute(f"ALTER TABLE {table} ADD COLUMN search_vector tsvector "
                       f"GENERATED ALWAYS AS ({vector}) STORED")
            op.execute(f"CREATE INDEX ix_search_{table} ON {table} USING gin (search_vector)")
        for table, at in _PG_ORDER.items():
            op.execute(f"CREATE INDEX ix_search_{table}_at ON {table} ({at}, id)")
        # The planner picks between walking the time index (a common word) and the GIN
        # index (a rare one) by each word's frequency; the default statistics only know the
        # few hundred most common words and take every other one for fairly common, which
        # sends a rare word down a walk of the whole table.
        for table in ("messages", "conversations"):
            op.execute(f"ALTER TABLE {table} ALTER COLUMN search_vector SET STATISTICS 1000")
    else:
        for statement in _sqlite_statements():
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _PG_ORDER:
            op.execute(f"DROP INDEX ix_search_{table}_at")
        for table in _PG_VECTORS:
            op.execute(f"DROP INDEX ix_search_{table}")
            op.execute(f"ALTER TABLE {table} DROP COLUMN search_vector")
    else:
        for name in ("fts_messages", "fts_conversations", "fts_identities", "fts_contacts"):
            for suffix in ("ai", "ad", "au"):
                op.execute(f"DROP TRIGGER {name}_{suffix}")
            op.execute(f"DROP TABLE {name}")
