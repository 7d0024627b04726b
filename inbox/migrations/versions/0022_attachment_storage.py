"""Attachments say where their bytes are: the database, a directory or an S3 bucket

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('attachments', sa.Column('storage', sa.String(20), nullable=False,
                                           server_default='database'))


def downgrade() -> None:
    # Files kept outside the database would be lost to a schema that cannot point at them.
    bind = op.get_bind()
    if bind.execute(sa.text(
            "SELECT count(*) FROM attachments WHERE storage != 'database'")).scalar():
        raise RuntimeError("attachments are stored outside the database; move them back "
                           "before downgrading")
    with op.batch_alter_table('attachments') as batch_op:
        batch_op.drop_column('storage')
