"""Stripe's veto on deleting a custom field that a live field mapping fills, through the CRM's hook."""
import pytest

from webapp.crm import service
from webapp.stripe_sync.models import RESOURCE_DISCONNECTED, FieldMapping, StripeAccount, StripeResource


def mapped(db, field, *resources):
    """One account whose resources (kind, status) each map a Stripe field into `field`."""
    account = StripeAccount(stripe_account_id="acct_1")
    db.session.add(account)
    db.session.flush()
    for i, (kind, status) in enumerate(resources):
        resource = StripeResource(account_id=account.id, kind=kind, status=status, token=f"t{i}")
        db.session.add(resource)
        db.session.flush()
        db.session.add(FieldMapping(resource_id=resource.id, stripe_field="metadata.plan", field_id=field.id))
    db.session.commit()


def test_a_field_live_mappings_fill_stays_and_the_message_names_them(db):
    plan = service.create_field("Plan", "text")
    mapped(db, plan, ("subscription", "active"), ("customer", "active"), ("charge", RESOURCE_DISCONNECTED))
    with pytest.raises(service.ValidationError) as exc:
        service.delete_field(plan)
    assert exc.value.errors == {"field": "“Plan” is filled by the Stripe Customer, Subscription field mapping. "
                                         "Change that mapping first (Apps → Stripe → the resource)."}
    db.session.rollback()
    assert service.custom_fields() == [plan] and db.session.query(FieldMapping).count() == 3


def test_a_field_only_disconnected_resources_map_goes_with_their_mapping_rows(db):
    plan = service.create_field("Plan", "text")
    mapped(db, plan, ("charge", RESOURCE_DISCONNECTED))
    service.delete_field(plan)
    assert service.custom_fields() == [] and db.session.query(FieldMapping).count() == 0
