"""labels.description: what a label is for, shown to agents choosing it

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN, not a batch rebuild (SQLite would lose the table's triggers and indexes).
    op.add_column('labels', sa.Column('description', sa.String(200), nullable=False,
                                      server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('labels') as batch_op:
        batch_op.drop_column('description')
