"""CRM connections: links of contacts to CRM records, the jobs to push, the sync log;
contacts.edited_at (when an agent last changed one: the later change wins)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('crm_connections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(40), nullable=False),
    sa.Column('name', sa.String(200), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(20), nullable=False),
    sa.Column('status_reason', sa.String(500), nullable=True),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('crm_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(20), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=True),
    sa.Column('event_id', sa.String(64), nullable=False),
    sa.Column('status', sa.String(20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(500), nullable=True),
    sa.Column('remote_id', sa.String(64), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['crm_connections.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('connection_id', 'event_id', 'kind', name='uq_crm_job_event')
    )
    op.create_index('ix_crm_jobs_contact', 'crm_jobs', ['connection_id', 'contact_id', 'status', 'id'])
    op.create_index('ix_crm_jobs_due', 'crm_jobs', ['status', 'next_attempt_at'])
    op.create_table('crm_links',
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('remote_id', sa.String(64), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['crm_connections.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('connection_id', 'contact_id'),
    sa.UniqueConstraint('connection_id', 'remote_id', name='uq_crm_link_remote')
    )
    op.create_table('crm_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('direction', sa.String(4), nullable=False),
    sa.Column('action', sa.String(60), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('remote_id', sa.String(64), nullable=True),
    sa.Column('outcome', sa.String(20), nullable=False),
    sa.Column('detail', sa.String(500), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['crm_connections.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_crm_log_connection', 'crm_log', ['connection_id', 'id'])
    # ADD COLUMN, not a batch rebuild (SQLite would lose the table's triggers and indexes).
    op.add_column('contacts', sa.Column('edited_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('contacts') as batch_op:
        batch_op.drop_column('edited_at')
    op.drop_table('crm_log')
    op.drop_table('crm_links')
    op.drop_table('crm_jobs')
    op.drop_table('crm_connections')
