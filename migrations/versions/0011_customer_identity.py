"""Identity by Stripe customer: which contact each Stripe customer is, the emails a contact used to have,
an index for a contact's Stripe timeline in Stripe's order, and recurring-payment history rows that an
imported subscription can write several of (one per status it passed through).

Revision ID: 0011_customer_identity
Revises: 0010_cli_secrets
Create Date: 2026-11-30 20:10:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0011_customer_identity'
down_revision = '0010_cli_secrets'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'contact_stripe_customers',
        sa.Column('account_id', sa.Integer(), sa.ForeignKey('stripe_accounts.id', ondelete='CASCADE'), nullable=False),
        sa.Column('customer_id', sa.String(length=255), nullable=False),
        sa.Column('contact_id', sa.Integer(), sa.ForeignKey('contacts.id', ondelete='CASCADE'), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'customer_id'),
    )
    op.create_index('ix_contact_stripe_customers_contact', 'contact_stripe_customers', ['contact_id'])
    op.create_table(
        'contact_email_changes',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('contact_id', sa.Integer(), sa.ForeignKey('contacts.id', ondelete='CASCADE'), nullable=False),
        sa.Column('old_email', sa.String(length=320), nullable=False),
        sa.Column('new_email', sa.String(length=320), nullable=False),
        sa.Column('changed_at', sa.DateTime(), nullable=False),
        sa.Column('stripe_customer_id', sa.String(length=255), nullable=True),
        sa.Column('event_row_id', sa.Integer(), nullable=True),
        sa.Column('recorded_at', sa.DateTime(), nullable=False),
    )
    op.create_index('ix_contact_email_changes_contact', 'contact_email_changes', ['contact_id', 'changed_at'])
    op.create_index('ix_stripe_events_contact_created', 'stripe_events', ['contact_id', 'created'])
    with op.batch_alter_table('recurring_payment_statuses') as batch:
        batch.drop_constraint('uq_recurring_status_event', type_='unique')
        batch.create_unique_constraint('uq_recurring_status_event', ['recurring_payment_id', 'event_row_id',
                                                                     'stripe_status'])
    # Contacts already linked to a Stripe customer through their buyer record keep that link.
    op.execute(
        "INSERT INTO contact_stripe_customers (account_id, customer_id, contact_id, created_at) "
        "SELECT account_id, stripe_customer_id, MIN(contact_id), CURRENT_TIMESTAMP FROM ecommerce_customers "
        "WHERE stripe_customer_id IS NOT NULL GROUP BY account_id, stripe_customer_id")


def downgrade():
    with op.batch_alter_table('recurring_payment_statuses') as batch:
        batch.drop_constraint('uq_recurring_status_event', type_='unique')
        batch.create_unique_constraint('uq_recurring_status_event', ['recurring_payment_id', 'event_row_id'])
    op.drop_index('ix_stripe_events_contact_created', table_name='stripe_events')
    op.drop_index('ix_contact_email_changes_contact', table_name='contact_email_changes')
    op.drop_table('contact_email_changes')
    op.drop_index('ix_contact_stripe_customers_contact', table_name='contact_stripe_customers')
    op.drop_table('contact_stripe_customers')
