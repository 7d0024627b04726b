"""outbox, consumed events, conversation cc

- `outbox`: events and send requests written in the same transaction as the change that
  causes them, published by one relay (inbox/outbox.py) and then deleted. On PostgreSQL a
  statement trigger NOTIFYs `switchboard_outbox`, delivered at commit: a relay in any
  process wakes at once.
- `consumed_events`: the events each durable consumer has handled (its dedupe record).
- `conversations.cc`: other people on an email thread, offered as Cc on replies;
  `conversations.merged_into_id`: where a merged conversation's messages went.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY_CHANNEL = "switchboard_outbox"


def upgrade() -> None:
    op.create_table(
        'outbox',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('stream', sa.String(20), nullable=False),
        sa.Column('key', sa.String(255), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'consumed_events',
        sa.Column('consumer', sa.String(100), nullable=False),
        sa.Column('event_id', sa.String(64), nullable=False),
        sa.Column('consumed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('consumer', 'event_id'),
    )
    # ADD COLUMN, not a batch rebuild: on SQLite a rebuild would drop the search triggers.
    op.add_column('conversations',
                  sa.Column('cc', sa.JSON(), nullable=False, server_default='[]'))
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite adds a column with its reference in place; alembic would want a rebuild.
        op.execute("ALTER TABLE conversations ADD COLUMN merged_into_id INTEGER "
                   "REFERENCES conversations (id)")
    else:
        op.add_column('conversations', sa.Column(
            'merged_into_id', sa.Integer(),
            sa.ForeignKey('conversations.id'), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"""
            CREATE FUNCTION switchboard_outbox_notify() RETURNS trigger AS $$
            BEGIN
                PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
                RETURN NULL;
            END $$ LANGUAGE plpgsql
        """)
        op.execute("""
            CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
            FOR EACH STATEMENT EXECUTE FUNCTION switchboard_outbox_notify()
        """)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
        op.execute("DROP FUNCTION IF EXISTS switchboard_outbox_notify()")
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_column('merged_into_id')
        batch_op.drop_column('cc')
    op.drop_table('consumed_events')
    op.drop_table('outbox')
