"""Join the historical-sync and automations branches into one history.

Revision ID: 0005_merge
Revises: 0004a_historical_sync, 0004b_automations
Create Date: 2026-11-29 20:06:00

"""
revision = '0005_merge'
down_revision = ('0004a_historical_sync', '0004b_automations')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
