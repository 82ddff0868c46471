"""Per-resource counters of synced, skipped and failed sync attempts.

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

COUNTERS = ("synced_count", "skipped_count", "failed_count")


def upgrade():
    with op.batch_alter_table('stripe_resources') as batch:
        for name in COUNTERS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table('stripe_resources') as batch:
        for name in COUNTERS:
            batch.drop_column(name)
