"""Report rollups: per day and month, per inbox and group, kept from the events stream

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTERS = ('created', 'resolved', 'reopened', 'replies', 'resolved_replies',
             'first_responses', 'sla_total', 'sla_met', 'csat_asked', 'csat_responses',
             'csat_sum', 'csat_satisfied')


def upgrade() -> None:
    op.create_table('report_rollups',
    sa.Column('period', sa.String(5), nullable=False),
    sa.Column('start', sa.Date(), nullable=False),
    sa.Column('inbox_id', sa.Integer(), nullable=False),
    sa.Column('dim', sa.String(10), nullable=False),
    sa.Column('key', sa.String(100), nullable=False),
    *[sa.Column(name, sa.Integer(), nullable=False) for name in _COUNTERS],
    sa.Column('first_response_hist', sa.JSON(), nullable=False),
    sa.Column('resolution_hist', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('period', 'start', 'inbox_id', 'dim', 'key')
    )
    op.create_index('ix_report_rollups_range', 'report_rollups', ['dim', 'period', 'start'])
    op.create_table('report_conversations',
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('cycle_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_response_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('replies', sa.Integer(), nullable=False),
    sa.Column('csat_score', sa.Integer(), nullable=True),
    sa.Column('csat_slots', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('conversation_id')
    )


def downgrade() -> None:
    op.drop_table('report_conversations')
    op.drop_table('report_rollups')
