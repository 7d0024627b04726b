"""Search: the messages of each inbox in time order (PostgreSQL)

A common word or a phrase is found by walking the newest messages in time order until a page
is full (inbox/search.py, _newest). Through the index of every inbox's messages
(ix_search_messages_at), an agent who sees 5 of 50 inboxes walks ten rows of other inboxes
for each of their own; with one b-tree per inbox's time order, each of their inboxes is
walked on its own and the walks are merged, so only their own rows are read. As with
migration 0023, a large install can build it beforehand without blocking writes:

    CREATE INDEX CONCURRENTLY ix_search_messages_inbox_at ON messages
        (inbox_id, accepted_at, id);

and this migration then leaves it as it is.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0024'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's search is one FTS5 query (migration 0005)
    op.execute("CREATE INDEX IF NOT EXISTS ix_search_messages_inbox_at ON messages "
               "(inbox_id, accepted_at, id)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_search_messages_inbox_at")
