"""Satisfaction surveys: which inboxes send them, each conversation's survey and answer

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('inboxes', sa.Column('csat_survey', sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    op.add_column('conversations', sa.Column('csat_asked_at', sa.DateTime(timezone=True),
                                             nullable=True))
    op.add_column('conversations', sa.Column('csat_score', sa.Integer(), nullable=True))
    op.create_table('csat_surveys',
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('inbox_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(40), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('assignee_id', sa.Integer(), nullable=True),
    sa.Column('team_id', sa.Integer(), nullable=True),
    sa.Column('nonce', sa.String(64), nullable=False),
    sa.Column('asked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answered_via', sa.String(20), nullable=True),
    sa.Column('link_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['assignee_id'], ['agents.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('conversation_id')
    )
    op.create_index('ix_csat_surveys_asked', 'csat_surveys', ['asked_at'])


def downgrade() -> None:
    op.drop_table('csat_surveys')
    with op.batch_alter_table('conversations') as batch_op:
        batch_op.drop_column('csat_score')
        batch_op.drop_column('csat_asked_at')
    with op.batch_alter_table('inboxes') as batch_op:
        batch_op.drop_column('csat_survey')
