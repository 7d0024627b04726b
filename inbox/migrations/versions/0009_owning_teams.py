"""labels.team_id, canned_responses.team_id: the team that owns each

A label or canned response is the workspace's (no team: admins manage it) or one team's
(its leads manage it). Existing ones stay the workspace's. Deleting a team gives what it
owned back to the workspace (inbox/teams.py does it before the delete).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('labels', 'canned_responses')


def upgrade() -> None:
    for table in TABLES:
        if op.get_bind().dialect.name == 'sqlite':
            # ADD COLUMN with its reference in place: a batch rebuild would drop triggers.
            op.execute(f"ALTER TABLE {table} ADD COLUMN team_id INTEGER "
                       "REFERENCES teams (id)")
        else:
            op.add_column(table, sa.Column('team_id', sa.Integer(), nullable=True))
            op.create_foreign_key(f'fk_{table}_team_id', table, 'teams', ['team_id'], ['id'])


def downgrade() -> None:
    for table in TABLES:
        if op.get_bind().dialect.name != 'sqlite':
            op.drop_constraint(f'fk_{table}_team_id', table, type_='foreignkey')
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column('team_id')
