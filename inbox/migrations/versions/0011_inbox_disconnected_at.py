"""inboxes.disconnected_at: a deleted inbox stops intake, its conversations stay readable

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN, not a batch rebuild (SQLite would lose the table's triggers and indexes).
    op.add_column('inboxes', sa.Column('disconnected_at', sa.DateTime(timezone=True),
                                       nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inboxes') as batch_op:
        batch_op.drop_column('disconnected_at')
