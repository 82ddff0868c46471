"""Stripe connections (accounts, resources, mappings, secrets), received events and the sync log."""
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.timeutil import utcnow

ACCOUNT_CONNECTED = "connected"
ACCOUNT_DISCONNECTED = "disconnected"

RESOURCE_ACTIVE = "active"
RESOURCE_NEEDS_ATTENTION = "needs_attention"
RESOURCE_DISCONNECTING = "disconnecting"  # endpoint deletion in Stripe not confirmed yet
RESOURCE_DISCONNECTED = "disconnected"

# WebhookSecret.source
SECRET_FROM_STRIPE = "stripe"  # the endpoint we created in Stripe
SECRET_FROM_CLI = "cli"  # pasted from `stripe listen` for local development

# StripeResource.endpoint_status, as the last health check found the endpoint in Stripe
ENDPOINT_ENABLED = "enabled"
ENDPOINT_DISABLED = "disabled"
ENDPOINT_MISSING = "missing"

SYNC_HISTORICAL = "historical"
SYNC_NEW_ONLY = "new_only"
SYNC_TYPES = {
    SYNC_HISTORICAL: "Sync historical records and capture new records",
    SYNC_NEW_ONLY: "Sync new records only",
}

# StripeEvent.status
EVENT_RECEIVED = "received"      # stored, not yet on the queue
EVENT_QUEUED = "queued"
EVENT_PROCESSED = "processed"
EVENT_SKIPPED = "skipped"
EVENT_IGNORED = "ignored"
EVENT_FAILED = "failed"

# SyncLog.outcome
OUTCOME_CREATED = "created"
OUTCOME_UPDATED = "updated"
OUTCOME_SKIPPED = "skipped"
OUTCOME_FAILED = "failed"
OUTCOME_IGNORED = "ignored"
OUTCOME_REJECTED = "rejected"  # a delivery intake refused (webhooks/rejections.py)
OUTCOMES = (OUTCOME_CREATED, OUTCOME_UPDATED, OUTCOME_SKIPPED, OUTCOME_FAILED, OUTCOME_IGNORED, OUTCOME_REJECTED)


class StripeAccount(db.Model):
    """A connected Stripe account and its (encrypted) secret key."""

    __tablename__ = "stripe_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_account_id: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[Optional[str]] = mapped_column(String(320))
    display_name: Mapped[Optional[str]] = mapped_column(String(255))
    livemode: Mapped[bool] = mapped_column(default=False)
    secret_key_enc: Mapped[Optional[str]] = mapped_column(Text)  # erased on disconnect
    key_mask: Mapped[Optional[str]] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default=ACCOUNT_CONNECTED)
    connected_at: Mapped[datetime] = mapped_column(default=utcnow)
    disconnected_at: Mapped[Optional[datetime]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Recovery of events webhooks did not deliver (stripe_sync/recovery/): every subscribed event created
    # before the checkpoint (epoch seconds) is stored; the gap is what Stripe no longer kept when we looked.
    events_checkpoint: Mapped[Optional[int]] = mapped_column()
    events_checked_at: Mapped[Optional[datetime]] = mapped_column()
    events_recovered: Mapped[int] = mapped_column(default=0)  # ever
    events_last_recovered: Mapped[int] = mapped_column(default=0)  # by the last check
    events_error: Mapped[Optional[str]] = mapped_column(Text)  # why the last check failed, in plain words
    events_gap_from: Mapped[Optional[int]] = mapped_column()
    events_gap_to: Mapped[Optional[int]] = mapped_column()

    resources: Mapped[list["StripeResource"]] = relationship(
        back_populates="account", order_by="StripeResource.id")

    @property
    def mode_label(self) -> str:
        """"Live" or "Test", as Stripe's dashboard says."""
        return "Live" if self.livemode else "Test"

    @property
    def active_resources(self) -> list["StripeResource"]:
        """Resources still shown on the page (not disconnected)."""
        return [r for r in self.resources if r.status != RESOURCE_DISCONNECTED]


class StripeResource(db.Model):
    """One synced resource (Charge, Customer, ...) of an account, with its webhook endpoint."""

    __tablename__ = "stripe_resources"
    __table_args__ = (Index("ix_stripe_resources_account_kind", "account_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("stripe_accounts.id"))
    kind: Mapped[str] = mapped_column(String(40))
    sync_type: Mapped[str] = mapped_column(String(20), default=SYNC_NEW_ONLY)
    trigger_historical: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(20), default=RESOURCE_ACTIVE)
    status_reason: Mapped[Optional[str]] = mapped_column(Text)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    webhook_endpoint_id: Mapped[Optional[str]] = mapped_column(String(255))
    webhook_url: Mapped[Optional[str]] = mapped_column(Text)
    last_event_at: Mapped[Optional[datetime]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disconnected_at: Mapped[Optional[datetime]] = mapped_column()
    endpoint_status: Mapped[Optional[str]] = mapped_column(String(20))  # ENDPOINT_*; None: not checked yet
    endpoint_seen_url: Mapped[Optional[str]] = mapped_column(Text)  # the URL Stripe has for it, when checked

    account: Mapped[StripeAccount] = relationship(back_populates="resources")
    mappings: Mapped[list["FieldMapping"]] = relationship(
        back_populates="resource", cascade="all, delete-orphan", order_by="FieldMapping.position")
    secrets: Mapped[list["WebhookSecret"]] = relationship(
        back_populates="resource", cascade="all, delete-orphan", order_by="WebhookSecret.id")

    @property
    def name(self) -> str:
        """Display name from the event table."""
        from webapp.stripe_sync.events import resource
        return resource(self.kind).name


class WebhookSecret(db.Model):
    """A signing secret of a resource's endpoint; several may be active while one is rotated."""

    __tablename__ = "webhook_secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("stripe_resources.id", ondelete="CASCADE"), index=True)
    secret_enc: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    source: Mapped[str] = mapped_column(String(20), default=SECRET_FROM_STRIPE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    resource: Mapped[StripeResource] = relationship(back_populates="secrets")


class FieldMapping(db.Model):
    """One mapping row: a Stripe customer field into an existing CRM field."""

    __tablename__ = "field_mappings"

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("stripe_resources.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    stripe_field: Mapped[str] = mapped_column(String(255))
    field_id: Mapped[int] = mapped_column(ForeignKey("contact_fields.id"), index=True)

    resource: Mapped[StripeResource] = relationship(back_populates="mappings")
    field: Mapped["ContactField"] = relationship(lazy="joined")  # noqa: F821


class ConnectDraft(db.Model):
    """The connect flow's state between steps, so nothing half-made is stored as a connection."""

    __tablename__ = "stripe_connect_drafts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    account_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stripe_accounts.id"))
    secret_key_enc: Mapped[Optional[str]] = mapped_column(Text)
    key_mask: Mapped[Optional[str]] = mapped_column(String(64))
    stripe_account_id: Mapped[str] = mapped_column(String(255))
    email: Mapped[Optional[str]] = mapped_column(String(320))
    display_name: Mapped[Optional[str]] = mapped_column(String(255))
    livemode: Mapped[bool] = mapped_column(default=False)
    kind: Mapped[Optional[str]] = mapped_column(String(40))
    sync_type: Mapped[Optional[str]] = mapped_column(String(20))
    trigger_historical: Mapped[bool] = mapped_column(default=False)
    metadata_keys: Mapped[Optional[list]] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StripeEvent(db.Model):
    """A Stripe event exactly as received, recorded before anything else happens to it."""

    __tablename__ = "stripe_events"
    __table_args__ = (
        UniqueConstraint("account_id", "stripe_event_id", name="uq_stripe_event_per_account"),
        Index("ix_stripe_events_status_received", "status", "received_at"),
        Index("ix_stripe_events_contact_created", "contact_id", "created"),  # a contact's Stripe timeline
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("stripe_accounts.id"))
    resource_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stripe_resources.id"), index=True)
    stripe_event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[int] = mapped_column()  # Stripe's `created`, epoch seconds
    livemode: Mapped[bool] = mapped_column(default=False)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=EVENT_RECEIVED)
    historical: Mapped[bool] = mapped_column(default=False)
    recovered: Mapped[bool] = mapped_column(default=False)  # read from /v1/events: no webhook brought it
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[Optional[str]] = mapped_column(Text)
    contact_id: Mapped[Optional[int]] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[Optional[datetime]] = mapped_column()
    processed_at: Mapped[Optional[datetime]] = mapped_column()


@dataclass
class EventRef:
    """The StripeEvent columns the write path reads, without loading the payload back."""

    id: int
    account_id: int
    resource_id: int | None
    stripe_event_id: str
    type: str
    created: int
    historical: bool = False
    recovered: bool = False


class SyncLog(db.Model):
    """One row per sync attempt, for the live log and a contact's Stripe activity."""

    __tablename__ = "sync_logs"
    __table_args__ = (
        Index("ix_sync_logs_resource", "resource_id", "id"),
        Index("ix_sync_logs_account", "account_id", "id"),
        Index("ix_sync_logs_outcome", "outcome", "id"),
        Index("ix_sync_logs_event_type", "event_type", "id"),
        Index("ix_sync_logs_contact", "contact_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    account_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stripe_accounts.id"))
    resource_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stripe_resources.id"))
    event_row_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stripe_events.id", ondelete="SET NULL"), index=True)
    stripe_event_id: Mapped[Optional[str]] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    contact_id: Mapped[Optional[int]] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[Optional[str]] = mapped_column(Text)
    detail: Mapped[Optional[str]] = mapped_column(Text)  # traceback summary for failures
    attempt: Mapped[int] = mapped_column(default=1)
    duration_ms: Mapped[Optional[int]] = mapped_column()
    historical: Mapped[bool] = mapped_column(default=False)
    recovered: Mapped[bool] = mapped_column(default=False)

    resource: Mapped[Optional[StripeResource]] = relationship(lazy="joined")
    contact: Mapped[Optional["Contact"]] = relationship(lazy="joined")  # noqa: F821


class ResourceCounter(db.Model):
    """Sync attempts per resource and outcome, so the manage page never counts the log.

    Each process writes its own shard row, so concurrent workers never wait on one hot row."""

    __tablename__ = "resource_counters"

    resource_id: Mapped[int] = mapped_column(ForeignKey("stripe_resources.id", ondelete="CASCADE"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20), primary_key=True)
    shard: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


COUNTER_SHARDS = 16


# Backfill.state
BACKFILL_QUEUED = "queued"
BACKFILL_RUNNING = "running"
BACKFILL_PAUSED = "paused"  # backing off after Stripe answered 429
BACKFILL_FINISHED = "finished"
BACKFILL_FAILED = "failed"
BACKFILL_CANCELLED = "cancelled"
BACKFILL_ACTIVE = (BACKFILL_QUEUED, BACKFILL_RUNNING, BACKFILL_PAUSED)
BACKFILL_STATE_LABELS = {
    BACKFILL_QUEUED: "queued", BACKFILL_RUNNING: "running", BACKFILL_PAUSED: "paused by rate limit",
    BACKFILL_FINISHED: "finished", BACKFILL_FAILED: "failed", BACKFILL_CANCELLED: "cancelled",
}


class Backfill(db.Model):
    """One historical import of a resource: its state and what it did (its windows say where it is, its lanes
    who runs it)."""

    __tablename__ = "stripe_backfills"
    __table_args__ = (Index("ix_stripe_backfills_state", "state", "updated_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("stripe_resources.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(20), default=BACKFILL_QUEUED)
    pages: Mapped[int] = mapped_column(default=0)
    imported: Mapped[int] = mapped_column(default=0)  # records that created or updated a contact
    skipped: Mapped[int] = mapped_column(default=0)  # no (valid) email
    failed: Mapped[int] = mapped_column(default=0)
    passed_over: Mapped[int] = mapped_column(default=0)  # imported before, or no event to replay (failed charges)
    rate_limited: Mapped[int] = mapped_column(default=0)  # 429 answers seen
    rate: Mapped[Optional[float]] = mapped_column()  # records per second
    error: Mapped[Optional[str]] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    paused_until: Mapped[Optional[datetime]] = mapped_column()
    rate_mark_at: Mapped[Optional[datetime]] = mapped_column()  # the current rate is measured since then
    rate_mark_count: Mapped[int] = mapped_column(default=0)  # `processed` at that moment
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[Optional[datetime]] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column()

    resource: Mapped[StripeResource] = relationship()

    @property
    def state_label(self) -> str:
        """The words the progress display uses."""
        return BACKFILL_STATE_LABELS.get(self.state, self.state)

    @property
    def is_active(self) -> bool:
        """Still queued, running or paused: the progress fragment keeps polling."""
        return self.state in BACKFILL_ACTIVE

    @property
    def processed(self) -> int:
        """Records looked at so far, whatever became of them."""
        return self.imported + self.skipped + self.failed + self.passed_over


# BackfillWindow.state
WINDOW_OPEN = "open"
WINDOW_DONE = "done"


class BackfillWindow(db.Model):
    """A slice [lo, hi) of `created` that one lane of the import reads newest first, with its own cursor."""

    __tablename__ = "stripe_backfill_windows"
    __table_args__ = (Index("ix_stripe_backfill_windows_pick", "backfill_id", "state", "lane", "hi"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    backfill_id: Mapped[int] = mapped_column(ForeignKey("stripe_backfills.id", ondelete="CASCADE"))
    lo: Mapped[int] = mapped_column()  # created >= lo
    hi: Mapped[int] = mapped_column()  # created < hi
    state: Mapped[str] = mapped_column(String(10), default=WINDOW_OPEN)
    lane: Mapped[Optional[int]] = mapped_column()  # the lane reading it; None: waiting for one
    cursor: Mapped[Optional[str]] = mapped_column(String(255))  # last record of its last saved page
    cursor_created: Mapped[Optional[int]] = mapped_column()
    pages: Mapped[int] = mapped_column(default=0)
    records: Mapped[int] = mapped_column(default=0)


class BackfillLane(db.Model):
    """One of the import's parallel RQ jobs: the job id allowed to write its windows' pages."""

    __tablename__ = "stripe_backfill_lanes"
    __table_args__ = (UniqueConstraint("backfill_id", "number", name="uq_stripe_backfill_lane"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    backfill_id: Mapped[int] = mapped_column(ForeignKey("stripe_backfills.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column()
    job_id: Mapped[Optional[str]] = mapped_column(String(100))  # None: idle (nothing to read)
    lost: Mapped[int] = mapped_column(default=0)  # requeues since its last saved page (worker deaths)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StripeCustomer(db.Model):
    """What Stripe last told us about one of an account's customers, and the time it describes
    (apply/customer_store.py), so a burst of payment events retrieves each customer once."""

    __tablename__ = "stripe_customers"
    __table_args__ = (UniqueConstraint("account_id", "customer_id", name="uq_stripe_customer_per_account"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("stripe_accounts.id", ondelete="CASCADE"))
    customer_id: Mapped[str] = mapped_column(String(255))
    data: Mapped[Optional[str]] = mapped_column(Text)  # the fields the mapping reads, as JSON; None: deleted
    described_at: Mapped[int] = mapped_column()  # epoch seconds: the event's `created`, or when it was read
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
