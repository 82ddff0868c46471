"""Recovering events webhooks did not deliver, and the endpoints' health as Stripe reports it.

Revision ID: 0009_event_recovery
Revises: 0008_backfill_windows
Create Date: 2026-11-30 17:20:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0009_event_recovery'
down_revision = '0008_backfill_windows'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('stripe_accounts') as batch:
        batch.add_column(sa.Column('events_checkpoint', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('events_checked_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('events_recovered', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('events_last_recovered', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('events_error', sa.Text(), nullable=True))
        batch.add_column(sa.Column('events_gap_from', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('events_gap_to', sa.Integer(), nullable=True))
    with op.batch_alter_table('stripe_resources') as batch:
        batch.add_column(sa.Column('endpoint_status', sa.String(length=20), nullable=True))
        batch.add_column(sa.Column('endpoint_seen_url', sa.Text(), nullable=True))
    with op.batch_alter_table('stripe_events') as batch:
        batch.add_column(sa.Column('recovered', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('sync_logs') as batch:
        batch.add_column(sa.Column('recovered', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('sync_logs') as batch:
        batch.drop_column('recovered')
    with op.batch_alter_table('stripe_events') as batch:
        batch.drop_column('recovered')
    with op.batch_alter_table('stripe_resources') as batch:
        batch.drop_column('endpoint_seen_url')
        batch.drop_column('endpoint_status')
    with op.batch_alter_table('stripe_accounts') as batch:
        for column in ('events_gap_to', 'events_gap_from',
                       'events_error', 'events_last_recovered', 'events_recovered', 'events_checked_at',
                       'events_checkpoint'):
            batch.drop_column(column)
