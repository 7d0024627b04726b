"""labels.name_key: label names unique without regard to case, in every script

The key is the name NFKC-normalised and case-folded in Python (inbox/labels.py,
`label_key`), so both databases compare names the same way. Existing labels get their
key; two existing labels whose names differ only by case keep both rows (the later one's key
gets its id appended), so nothing is merged or renamed silently.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(name: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def upgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_key', sa.String(length=120), nullable=True))
    bind = op.get_bind()
    seen: set[str] = set()
    for row_id, name in bind.execute(sa.text("SELECT id, name FROM labels ORDER BY id")):
        key = _key(name)
        if key in seen:
            key = f"{key}#{row_id}"
        seen.add(key)
        bind.execute(sa.text("UPDATE labels SET name_key = :key WHERE id = :id"),
                     {"key": key, "id": row_id})
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.alter_column('name_key', existing_type=sa.String(length=120), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_labels_name_key'), ['name_key'])


def downgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_labels_name_key'), type_='unique')
        batch_op.drop_column('name_key')
