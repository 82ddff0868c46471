"""Stripe's say when a custom field is deleted: a field a live mapping fills would silently stop syncing."""
from sqlalchemy import select

from webapp.crm import hooks
from webapp.crm.models import ContactField
from webapp.extensions import db
from webapp.stripe_sync.models import RESOURCE_DISCONNECTED, FieldMapping, StripeResource


def refuse_mapped_field(field: ContactField) -> str | None:
    """The user must change the mapping first, so the message names it and says where it is."""
    users = db.session.scalars(select(StripeResource).join(FieldMapping, FieldMapping.resource_id == StripeResource.id)
                               .where(FieldMapping.field_id == field.id)).unique().all()
    active = [r for r in users if r.status != RESOURCE_DISCONNECTED]
    if not active:
        return None
    names = ", ".join(sorted({r.name for r in active}))
    return (f"“{field.label}” is filled by the Stripe {names} field mapping. "
            "Change that mapping first (Apps → Stripe → the resource).")


def drop_stale_mappings(field: ContactField) -> None:
    """Disconnected resources keep their mapping rows, whose foreign key would block the delete."""
    db.session.execute(db.delete(FieldMapping).where(FieldMapping.field_id == field.id))


def register() -> None:
    """create_app calls this; the CRM cannot import Stripe to ask."""
    hooks.field_deletion_vetoes.register(refuse_mapped_field)
    hooks.field_deletion_cleanups.register(drop_stale_mappings)
