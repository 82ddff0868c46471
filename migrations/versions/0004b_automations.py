"""Automations, their actions and runs, run logs, trigger checks and the email outbox.

Revision ID: 0004b_automations
Revises: 0003_resource_counters
Create Date: 2026-12-01 10:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0004b_automations'
down_revision = '0003_resource_counters'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'automations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('activated_at', sa.DateTime(), nullable=True),
        sa.Column('trigger_type', sa.String(length=60), nullable=True),
        sa.Column('trigger_config', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'automation_steps',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('automation_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('config', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['automation_id'], ['automations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_automation_steps_automation', 'automation_steps', ['automation_id', 'position'])
    op.create_table(
        'automation_runs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('automation_id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('trigger_fired_id', sa.Integer(), nullable=True),
        sa.Column('event_row_id', sa.Integer(), nullable=True),
        sa.Column('event_type', sa.String(length=100), nullable=True),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('step_index', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.String(length=80), nullable=True),
        sa.Column('next_run_at', sa.DateTime(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['automation_id'], ['automations.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['trigger_fired_id'], ['triggers_fired.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['event_row_id'], ['stripe_events.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('automation_id', 'trigger_fired_id', name='uq_automation_run_trigger'),
    )
    op.create_index('ix_automation_runs_automation', 'automation_runs', ['automation_id', 'id'])
    op.create_index('ix_automation_runs_state', 'automation_runs', ['state', 'next_run_at'])
    op.create_index('ix_automation_runs_contact_id', 'automation_runs', ['contact_id'])
    op.create_table(
        'automation_run_logs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('step_index', sa.Integer(), nullable=True),
        sa.Column('level', sa.String(length=10), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['automation_runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_automation_run_logs_run', 'automation_run_logs', ['run_id', 'id'])
    op.create_table(
        'automation_trigger_checks',
        sa.Column('trigger_fired_id', sa.Integer(), nullable=False),
        sa.Column('checked_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['trigger_fired_id'], ['triggers_fired.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('trigger_fired_id'),
    )
    op.create_table(
        'outbox_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=True),
        sa.Column('step_index', sa.Integer(), nullable=True),
        sa.Column('automation_id', sa.Integer(), nullable=True),
        sa.Column('automation_name', sa.String(length=200), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=True),
        sa.Column('to_email', sa.String(length=320), nullable=False),
        sa.Column('subject', sa.Text(), nullable=False),
        sa.Column('body_html', sa.Text(), nullable=False),
        sa.Column('body_text', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['automation_runs.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['automation_id'], ['automations.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('run_id', 'step_index', name='uq_outbox_run_step'),
    )
    op.create_index('ix_outbox_messages_state', 'outbox_messages', ['state', 'id'])
    op.create_index('ix_outbox_messages_automation_id', 'outbox_messages', ['automation_id'])
    op.create_index('ix_outbox_messages_contact_id', 'outbox_messages', ['contact_id'])


def downgrade():
    op.drop_table('outbox_messages')
    op.drop_table('automation_trigger_checks')
    op.drop_table('automation_run_logs')
    op.drop_table('automation_runs')
    op.drop_table('automation_steps')
    op.drop_table('automations')
