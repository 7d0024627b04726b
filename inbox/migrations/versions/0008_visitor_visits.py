"""visitor_visits: what the website chat knows of each visitor

One row per widget identity (`contact_identities.value` of kind visitor): current page and
title, referrer, browser and OS, language, time zone, first and last seen, and whether the
host site vouched for the identifier. The contact panel shows it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'visitor_visits',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('inbox_id', sa.Integer(), nullable=False),
        sa.Column('identity_value', sa.String(320), nullable=False),
        sa.Column('page_url', sa.String(2000), nullable=True),
        sa.Column('page_title', sa.String(300), nullable=True),
        sa.Column('referrer', sa.String(2000), nullable=True),
        sa.Column('browser', sa.String(100), nullable=True),
        sa.Column('os', sa.String(100), nullable=True),
        sa.Column('language', sa.String(35), nullable=True),
        sa.Column('time_zone', sa.String(64), nullable=True),
        sa.Column('verified', sa.Boolean(), nullable=False),
        sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('identity_value'),
    )


def downgrade() -> None:
    op.drop_table('visitor_visits')
