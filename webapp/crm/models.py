"""The CRM's own data: contacts, their fields and tags."""
from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.timeutil import utcnow

FIELD_TYPES = {
    "text": "Text",
    "number": "Number",
    "date": "Date",
    "dropdown": "Dropdown",
}
STANDARD_FIELDS = (
    # key, label, type
    ("email", "Email", "email"),
    ("first_name", "First Name", "text"),
    ("last_name", "Last Name", "text"),
    ("phone", "Phone", "phone"),
)


class ContactField(db.Model):
    """A field a contact can hold: the four standard ones and the user's custom ones."""

    __tablename__ = "contact_fields"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    label: Mapped[str] = mapped_column(String(120))
    label_lower: Mapped[str] = mapped_column(String(120), unique=True)
    type: Mapped[str] = mapped_column(String(20))
    options: Mapped[Optional[list]] = mapped_column(JSON, default=None)
    is_standard: Mapped[bool] = mapped_column(default=False)
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def type_label(self) -> str:
        """Human name of the type for the fields page."""
        return FIELD_TYPES.get(self.type, self.type.title())


class Contact(db.Model):
    """A person the marketer talks to, unique by email regardless of case."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_name_key", "name_key"),
        Index("ix_contacts_last_key", "last_key"),
        # The list sorts by these with id as the tie-break (crm/search.py); summary.py keeps them.
        Index("ix_contacts_lifetime_value", "lifetime_value", "id"),
        Index("ix_contacts_last_payment_at", "last_payment_at", "id"),
        Index("ix_contacts_subscription_status", "subscription_status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_lower: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(64), default="")
    # Lower-cased "first last" and "last" so name search is an index range scan.
    name_key: Mapped[str] = mapped_column(String(401), default="")
    last_key: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Figures the contacts list shows and sorts by, derived from Stripe data by crm/summary.py.
    # Minor units of lifetime_currency. The column's server default (migration 0012) is for rows that
    # existed before it; declared here too, it made SQLite insert a batch's contacts one at a time.
    lifetime_value: Mapped[int] = mapped_column(default=0)
    lifetime_currency: Mapped[Optional[str]] = mapped_column(String(3))
    last_payment_at: Mapped[Optional[datetime]] = mapped_column()
    subscription_status: Mapped[Optional[str]] = mapped_column(String(30))

    # Loaded on access; lists that show many contacts ask for them with selectinload.
    values: Mapped[list["ContactFieldValue"]] = relationship(back_populates="contact", cascade="all, delete-orphan")
    tag_links: Mapped[list["ContactTag"]] = relationship(back_populates="contact", cascade="all, delete-orphan")

    @property
    def full_name(self) -> str:
        """Name as shown in lists; empty when unknown."""
        return " ".join(p for p in (self.first_name, self.last_name) if p)

    @property
    def tags(self) -> list["Tag"]:
        """Tags sorted by name for display."""
        return sorted((link.tag for link in self.tag_links), key=lambda t: t.name_lower)

    def refresh_keys(self) -> None:
        """Keep the lower-cased lookup columns in step with the visible ones."""
        self.email = self.email.strip()
        self.email_lower = self.email.lower()
        self.name_key = " ".join(p for p in (self.first_name, self.last_name) if p).lower()
        self.last_key = (self.last_name or "").lower()


class ContactFieldValue(db.Model):
    """A contact's value for one custom field, stored as text."""

    __tablename__ = "contact_field_values"
    __table_args__ = (UniqueConstraint("contact_id", "field_id", name="uq_contact_field_value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    field_id: Mapped[int] = mapped_column(ForeignKey("contact_fields.id", ondelete="CASCADE"), index=True)
    value: Mapped[str] = mapped_column(Text, default="")

    contact: Mapped[Contact] = relationship(back_populates="values")
    field: Mapped[ContactField] = relationship(lazy="joined")


class Tag(db.Model):
    """A label on contacts, unique regardless of case."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_lower: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactTag(db.Model):
    """A tag on a contact, at most once."""

    __tablename__ = "contact_tags"
    __table_args__ = (Index("ix_contact_tags_tag_contact", "tag_id", "contact_id"),)

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    contact: Mapped[Contact] = relationship(back_populates="tag_links")
    tag: Mapped[Tag] = relationship(lazy="joined")


class ContactFieldStamp(db.Model):
    """Which Stripe event last wrote a contact field, so an older event never overwrites it."""

    __tablename__ = "contact_field_stamps"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    field_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    event_created: Mapped[int] = mapped_column()  # Stripe's `created`, epoch seconds
    event_row_id: Mapped[int] = mapped_column()  # arrival order breaks ties


class EcommerceCustomer(db.Model):
    """A contact as a buyer from one Stripe account: totals across its orders."""

    __tablename__ = "ecommerce_customers"
    __table_args__ = (UniqueConstraint("account_id", "contact_id", name="uq_ecommerce_customer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("stripe_accounts.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    stripe_customer_id: Mapped[Optional[str]] = mapped_column(String(255))
    total_revenue: Mapped[int] = mapped_column(default=0)  # minor units of `currency`
    total_orders: Mapped[int] = mapped_column(default=0)
    currency: Mapped[Optional[str]] = mapped_column(String(3))
    last_order_at: Mapped[Optional[datetime]] = mapped_column()
    last_order_amount: Mapped[Optional[int]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Order(db.Model):
    """One paid Checkout Session."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("account_id", "external_id", name="uq_order_external"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("stripe_accounts.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(255))
    payment_intent: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    amount_total: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    status: Mapped[str] = mapped_column(String(20), default="paid")  # paid | refunded
    products: Mapped[Optional[list]] = mapped_column(JSON, default=None)
    ordered_at: Mapped[datetime] = mapped_column(default=utcnow)
    refunded_at: Mapped[Optional[datetime]] = mapped_column()
    source_event_created: Mapped[int] = mapped_column(default=0)
    source_event_row_id: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecurringPayment(db.Model):
    """One Stripe subscription as the CRM sees it."""

    __tablename__ = "recurring_payments"
    __table_args__ = (UniqueConstraint("account_id", "external_id", name="uq_recurring_external"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("stripe_accounts.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(30))  # ACTIVE, PAYMENT_FAILED, CANCELLED, ...
    stripe_status: Mapped[str] = mapped_column(String(30))
    name: Mapped[Optional[str]] = mapped_column(String(255))
    amount: Mapped[Optional[int]] = mapped_column()
    currency: Mapped[Optional[str]] = mapped_column(String(3))
    interval: Mapped[Optional[str]] = mapped_column(String(20))
    current_period_end: Mapped[Optional[datetime]] = mapped_column()
    trial_end: Mapped[Optional[datetime]] = mapped_column()
    canceled_at: Mapped[Optional[datetime]] = mapped_column()
    source_event_created: Mapped[int] = mapped_column(default=0)
    source_event_row_id: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    history: Mapped[list["RecurringPaymentStatus"]] = relationship(
        back_populates="recurring_payment", cascade="all, delete-orphan",
        order_by="RecurringPaymentStatus.event_created")


class RecurringPaymentStatus(db.Model):
    """A status a subscription passed through, with the event that said so."""

    __tablename__ = "recurring_payment_statuses"
    __table_args__ = (UniqueConstraint("recurring_payment_id", "event_row_id", "stripe_status",
                                       name="uq_recurring_status_event"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recurring_payment_id: Mapped[int] = mapped_column(ForeignKey("recurring_payments.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(30))
    stripe_status: Mapped[str] = mapped_column(String(30))
    event_type: Mapped[str] = mapped_column(String(100))
    event_created: Mapped[int] = mapped_column()
    event_row_id: Mapped[int] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    recurring_payment: Mapped[RecurringPayment] = relationship(back_populates="history")


class TriggerFired(db.Model):
    """An automation trigger fired for a contact by a Stripe event; automations consume these."""

    __tablename__ = "triggers_fired"
    __table_args__ = (
        UniqueConstraint("trigger", "event_row_id", "contact_id", name="uq_trigger_event_contact"),
        Index("ix_triggers_fired_contact", "contact_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column(String(60))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    event_row_id: Mapped[int] = mapped_column(ForeignKey("stripe_events.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(100))
    details: Mapped[Optional[dict]] = mapped_column(JSON, default=None)
    historical: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactStripeCustomer(db.Model):
    """Which contact a Stripe customer is: identity by customer, so an email change keeps one contact."""

    __tablename__ = "contact_stripe_customers"
    __table_args__ = (Index("ix_contact_stripe_customers_contact", "contact_id"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("stripe_accounts.id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactEmailChange(db.Model):
    """An email a contact used to have, kept in its history when Stripe (or a user) changed it."""

    __tablename__ = "contact_email_changes"
    __table_args__ = (Index("ix_contact_email_changes_contact", "contact_id", "changed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    old_email: Mapped[str] = mapped_column(String(320))
    new_email: Mapped[str] = mapped_column(String(320))
    changed_at: Mapped[datetime] = mapped_column()  # when it changed in Stripe (the event's `created`)
    stripe_customer_id: Mapped[Optional[str]] = mapped_column(String(255))
    event_row_id: Mapped[Optional[int]] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
