"""Per-resource counters of sync attempts by outcome, sharded per process.

Revision ID: 0003_resource_counters
Revises: 0002_stripe
Create Date: 2026-11-29 19:05:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0003_resource_counters'
down_revision = '0002_stripe'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'resource_counters',
        sa.Column('resource_id', sa.Integer(), nullable=False),
        sa.Column('outcome', sa.String(length=20), nullable=False),
        sa.Column('shard', sa.Integer(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['resource_id'], ['stripe_resources.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('resource_id', 'outcome', 'shard'),
    )


def downgrade():
    op.drop_table('resource_counters')
