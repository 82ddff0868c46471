"""Historical sync: one row per import of a resource's existing Stripe records.

Revision ID: 0004a_historical_sync
Revises: 0003_resource_counters
Create Date: 2026-12-01 10:30:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0004a_historical_sync'
down_revision = '0003_resource_counters'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'stripe_backfills',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('resource_id', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('cursor', sa.String(length=255), nullable=True),
        sa.Column('cursor_created', sa.Integer(), nullable=True),
        sa.Column('pages', sa.Integer(), nullable=False),
        sa.Column('imported', sa.Integer(), nullable=False),
        sa.Column('skipped', sa.Integer(), nullable=False),
        sa.Column('failed', sa.Integer(), nullable=False),
        sa.Column('passed_over', sa.Integer(), nullable=False),
        sa.Column('rate_limited', sa.Integer(), nullable=False),
        sa.Column('rate', sa.Double(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('job_id', sa.String(length=100), nullable=True),
        sa.Column('cancel_requested', sa.Boolean(), nullable=False),
        sa.Column('lost', sa.Integer(), nullable=False),
        sa.Column('paused_until', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['resource_id'], ['stripe_resources.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('stripe_backfills', schema=None) as batch_op:
        batch_op.create_index('ix_stripe_backfills_resource_id', ['resource_id'], unique=False)
        batch_op.create_index('ix_stripe_backfills_state', ['state', 'updated_at'], unique=False)


def downgrade():
    with op.batch_alter_table('stripe_backfills', schema=None) as batch_op:
        batch_op.drop_index('ix_stripe_backfills_state')
        batch_op.drop_index('ix_stripe_backfills_resource_id')
    op.drop_table('stripe_backfills')
