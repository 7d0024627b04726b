"""SLA policies, conversations' SLA clocks, and their soonest due time on conversations

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sla_policies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(200), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('inbox_id', sa.Integer(), nullable=True),
    sa.Column('team_id', sa.Integer(), nullable=True),
    sa.Column('priorities', sa.JSON(), nullable=False),
    sa.Column('label', sa.String(200), nullable=True),
    sa.Column('first_response_s', sa.Integer(), nullable=True),
    sa.Column('next_response_s', sa.Integer(), nullable=True),
    sa.Column('resolution_s', sa.Integer(), nullable=True),
    sa.Column('warn_s', sa.Integer(), nullable=False),
    sa.Column('calendar', sa.JSON(), nullable=True),
    sa.Column('pause_when_waiting', sa.Boolean(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('conversation_slas',
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('policy_id', sa.Integer(), nullable=True),
    sa.Column('clocks', sa.JSON(), nullable=False),
    sa.Column('check_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['policy_id'], ['sla_policies.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('conversation_id')
    )
    op.create_index('ix_conversation_slas_check_at', 'conversation_slas', ['check_at'])
    # ADD COLUMN, not a batch rebuild (SQLite would lose the table's triggers and indexes).
    op.add_column('conversations', sa.Column('sla_due_at', sa.DateTime(timezone=True),
                                             nullable=True))
    op.add_column('conversations', sa.Column('sla_status', sa.String(10), nullable=True))
    op.create_index('ix_conversations_sla', 'conversations', ['sla_status', 'sla_due_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_conversations_sla', 'conversations')
    with op.batch_alter_table('conversations') as batch_op:
        batch_op.drop_column('sla_status')
        batch_op.drop_column('sla_due_at')
    op.drop_table('conversation_slas')
    op.drop_table('sla_policies')
