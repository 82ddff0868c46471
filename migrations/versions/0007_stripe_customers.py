"""Remembered Stripe customers: one retrieve serves every event of a payment.

Revision ID: 0007_stripe_customers
Revises: 0006_session_version
Create Date: 2026-11-30 12:30:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0007_stripe_customers'
down_revision = '0006_session_version'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'stripe_customers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.String(length=255), nullable=False),
        sa.Column('data', sa.Text(), nullable=True),
        sa.Column('described_at', sa.Integer(), nullable=False),
        sa.Column('stored_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['stripe_accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id', 'customer_id', name='uq_stripe_customer_per_account'),
    )


def downgrade():
    op.drop_table('stripe_customers')
