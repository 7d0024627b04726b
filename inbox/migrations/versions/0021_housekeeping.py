"""Housekeeping: consumed events are found by age, to forget the oldest

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_consumed_events_at', 'consumed_events', ['consumed_at'])


def downgrade() -> None:
    op.drop_index('ix_consumed_events_at', table_name='consumed_events')
