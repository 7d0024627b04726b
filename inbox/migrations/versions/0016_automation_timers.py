"""Timed automation rules: a rule's delay, and the timers waiting on conversations

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('automation_rules', sa.Column('delay_s', sa.Integer(), nullable=True))
    op.create_table('automation_timers',
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('armed_by', sa.String(64), nullable=False),
    sa.Column('armed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['automation_rules.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('rule_id', 'conversation_id')
    )
    op.create_index('ix_automation_timers_due', 'automation_timers', ['due_at'])


def downgrade() -> None:
    op.drop_table('automation_timers')
    with op.batch_alter_table('automation_rules') as batch_op:
        batch_op.drop_column('delay_s')
