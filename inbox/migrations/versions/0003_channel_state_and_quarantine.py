"""channel state and quarantine

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('channel_state',
    sa.Column('inbox_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(200), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('inbox_id', 'key')
    )
    op.create_table('quarantined_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('inbox_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(1000), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('quarantined_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantined_messages_inbox_id'), ['inbox_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('quarantined_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantined_messages_inbox_id'))

    op.drop_table('quarantined_messages')
    op.drop_table('channel_state')

