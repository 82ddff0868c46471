"""Imports every model so SQLAlchemy and Alembic see the whole schema."""
from webapp.auth.models import User  # noqa: F401
from webapp.automations.models import (  # noqa: F401
    Automation, AutomationRun, AutomationRunLog, AutomationStep, AutomationTriggerCheck, OutboxMessage,
)
from webapp.crm.models import (  # noqa: F401
    Contact, ContactField, ContactFieldStamp, ContactFieldValue, ContactTag, EcommerceCustomer, Order,
    RecurringPayment, RecurringPaymentStatus, Tag, TriggerFired,
)
from webapp.stripe_sync.models import (  # noqa: F401
    Backfill, ConnectDraft, FieldMapping, ResourceCounter, StripeAccount, StripeEvent, StripeResource, SyncLog,
    WebhookSecret,
)
