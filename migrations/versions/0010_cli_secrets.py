"""Where a webhook signing secret came from: the endpoint we created in Stripe, or pasted from `stripe listen`.

Revision ID: 0010_cli_secrets
Revises: 0009_event_recovery
Create Date: 2026-11-30 18:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0010_cli_secrets'
down_revision = '0009_event_recovery'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webhook_secrets') as batch:
        batch.add_column(sa.Column('source', sa.String(length=20), nullable=False, server_default='stripe'))


def downgrade():
    with op.batch_alter_table('webhook_secrets') as batch:
        batch.drop_column('source')
