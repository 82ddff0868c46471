"""Users' session version: logging out or changing the password ends every session issued before.

Revision ID: 0006_session_version
Revises: 0005_merge
Create Date: 2026-11-30 11:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0006_session_version'
down_revision = '0005_merge'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
