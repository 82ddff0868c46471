"""Historical import in parallel: time windows with their own cursors, lanes of RQ jobs, the current rate.

Revision ID: 0008_backfill_windows
Revises: 0007_stripe_customers
Create Date: 2026-11-30 15:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0008_backfill_windows'
down_revision = '0007_stripe_customers'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'stripe_backfill_windows',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('backfill_id', sa.Integer(), nullable=False),
        sa.Column('lo', sa.Integer(), nullable=False),
        sa.Column('hi', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('lane', sa.Integer(), nullable=True),
        sa.Column('cursor', sa.String(length=255), nullable=True),
        sa.Column('cursor_created', sa.Integer(), nullable=True),
        sa.Column('pages', sa.Integer(), nullable=False),
        sa.Column('records', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['backfill_id'], ['stripe_backfills.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_stripe_backfill_windows_pick', 'stripe_backfill_windows',
                    ['backfill_id', 'state', 'lane', 'hi'])
    op.create_table(
        'stripe_backfill_lanes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('backfill_id', sa.Integer(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.String(length=100), nullable=True),
        sa.Column('lost', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['backfill_id'], ['stripe_backfills.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('backfill_id', 'number', name='uq_stripe_backfill_lane'),
    )
    with op.batch_alter_table('stripe_backfills') as batch:
        batch.add_column(sa.Column('rate_mark_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('rate_mark_count', sa.Integer(), nullable=False, server_default='0'))
        batch.drop_column('job_id')  # each lane names its job now (stripe_backfill_lanes)
        batch.drop_column('lost')
        batch.drop_column('cursor')  # each window keeps its own
        batch.drop_column('cursor_created')


def downgrade():
    with op.batch_alter_table('stripe_backfills') as batch:
        batch.add_column(sa.Column('cursor_created', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('cursor', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('lost', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('job_id', sa.String(length=100), nullable=True))
        batch.drop_column('rate_mark_count')
        batch.drop_column('rate_mark_at')
    op.drop_table('stripe_backfill_lanes')
    op.drop_index('ix_stripe_backfill_windows_pick', table_name='stripe_backfill_windows')
    op.drop_table('stripe_backfill_windows')
