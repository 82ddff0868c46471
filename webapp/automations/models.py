"""Automations, their actions, the runs contacts make through them, and the email outbox.

Why the shapes:
- A run is unique per (automation, fired trigger), so a redelivered Stripe event (which fires
  nothing new) or a retried job never makes a contact enter twice.
- A run's `step_index` is the next action to run; it moves in the same transaction as that
  action's effect, so a retried job resumes after the last committed action and repeats none.
- `job_id` is the token of the one RQ job allowed to move the run; the sweep replaces it when it
  re-enqueues a lost run, so a late duplicate job finds a stale token and stops.
- Outbox messages keep their text and the automation's name, so deleting an automation leaves
  the record of what was sent.
"""
from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.timeutil import utcnow

# AutomationRun.state
RUN_RUNNING = "running"      # a job is (or should be) moving it
RUN_WAITING = "waiting"      # a wait action: a scheduled job resumes it at next_run_at
RUN_PAUSED = "paused"        # the automation was deactivated; activation resumes it
RUN_COMPLETED = "completed"
RUN_FAILED = "failed"
RUN_STATES = {
    RUN_RUNNING: "Running",
    RUN_WAITING: "Waiting",
    RUN_PAUSED: "Paused",
    RUN_COMPLETED: "Completed",
    RUN_FAILED: "Failed",
}
OPEN_RUN_STATES = (RUN_RUNNING, RUN_WAITING, RUN_PAUSED)

# OutboxMessage.state
MSG_QUEUED = "queued"
MSG_SENT = "sent"
MSG_FAILED = "failed"
MSG_NOT_SENT = "not_sent"  # stored while no SMTP_URL was configured
MSG_STATES = {
    MSG_QUEUED: "Queued",
    MSG_SENT: "Sent",
    MSG_FAILED: "Failed",
    MSG_NOT_SENT: "Not sent (no SMTP_URL configured)",
}


class Automation(db.Model):
    """A trigger and the actions a contact goes through when it fires."""

    __tablename__ = "automations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=False)
    activated_at: Mapped[Optional[datetime]] = mapped_column()  # triggers fired earlier never enter
    trigger_type: Mapped[Optional[str]] = mapped_column(String(60))
    trigger_config: Mapped[Optional[dict]] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    steps: Mapped[list["AutomationStep"]] = relationship(
        back_populates="automation", cascade="all, delete-orphan", passive_deletes=True,
        order_by="AutomationStep.position")


class AutomationStep(db.Model):
    """One action of an automation; `config` holds what its kind needs (tag, field, email, wait)."""

    __tablename__ = "automation_steps"
    __table_args__ = (Index("ix_automation_steps_automation", "automation_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    automation_id: Mapped[int] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)
    kind: Mapped[str] = mapped_column(String(30))
    config: Mapped[Optional[dict]] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    automation: Mapped[Automation] = relationship(back_populates="steps")


class AutomationRun(db.Model):
    """One contact going through one automation because one trigger fired."""

    __tablename__ = "automation_runs"
    __table_args__ = (
        UniqueConstraint("automation_id", "trigger_fired_id", name="uq_automation_run_trigger"),
        Index("ix_automation_runs_automation", "automation_id", "id"),
        Index("ix_automation_runs_state", "state", "next_run_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    automation_id: Mapped[int] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    trigger_fired_id: Mapped[Optional[int]] = mapped_column(ForeignKey("triggers_fired.id", ondelete="SET NULL"))
    event_row_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stripe_events.id", ondelete="SET NULL"))
    event_type: Mapped[Optional[str]] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default=RUN_RUNNING)
    step_index: Mapped[int] = mapped_column(default=0)  # the next action to run
    job_id: Mapped[Optional[str]] = mapped_column(String(80))
    next_run_at: Mapped[Optional[datetime]] = mapped_column()
    error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column()

    automation: Mapped[Automation] = relationship()
    contact: Mapped["Contact"] = relationship(lazy="joined")  # noqa: F821
    log: Mapped[list["AutomationRunLog"]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True,
        order_by="AutomationRunLog.id")

    @property
    def state_label(self) -> str:
        """The state as the runs table shows it."""
        return RUN_STATES.get(self.state, self.state.title())


class AutomationRunLog(db.Model):
    """One line of what a run did, appended in the transaction that did it."""

    __tablename__ = "automation_run_logs"
    __table_args__ = (Index("ix_automation_run_logs_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("automation_runs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    step_index: Mapped[Optional[int]] = mapped_column()
    level: Mapped[str] = mapped_column(String(10), default="info")  # info | error
    message: Mapped[str] = mapped_column(Text)

    run: Mapped[AutomationRun] = relationship(back_populates="log")


class AutomationTriggerCheck(db.Model):
    """A fired trigger already matched against the automations, so the sweep skips it."""

    __tablename__ = "automation_trigger_checks"

    trigger_fired_id: Mapped[int] = mapped_column(ForeignKey("triggers_fired.id", ondelete="CASCADE"),
                                                  primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(db.Model):
    """A rendered email: what was (or will be) sent, to whom, for which run, and how it went."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("run_id", "step_index", name="uq_outbox_run_step"),
        Index("ix_outbox_messages_state", "state", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("automation_runs.id", ondelete="SET NULL"))
    step_index: Mapped[Optional[int]] = mapped_column()
    automation_id: Mapped[Optional[int]] = mapped_column(ForeignKey("automations.id", ondelete="SET NULL"),
                                                         index=True)
    automation_name: Mapped[str] = mapped_column(String(200), default="")
    contact_id: Mapped[Optional[int]] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    to_email: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), default=MSG_QUEUED)
    error: Mapped[Optional[str]] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[Optional[datetime]] = mapped_column()

    @property
    def state_label(self) -> str:
        """The state as the outbox shows it."""
        return MSG_STATES.get(self.state, self.state.title())
