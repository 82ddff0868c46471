""""Preview with a recent customer": what the mapping being edited would write into a contact, read-only.

Decisions:
- One Stripe API call, never retried: the resource's list (the event table's history path and filters)
  with `limit=1`, newest first, and `expand[]=data.customer` for objects that name a customer, so the
  customer comes along and needs no fetch. A Stripe failure becomes a sentence (client.describe) and
  the preview says it; the key never appears.
- The customer is resolved exactly as events are (apply/customer.py resolve_customer_data, its object's
  own details filling what the customer lacks), and each row's writes come from the sync's own
  plan_field_writes, so the name split shown is the one the sync does.
- The rows are the form's current, unsaved ones; incomplete rows are passed over, and a row Finish
  would refuse is still previewed with the reason, so the preview explains rather than hides.
- A value the CRM field cannot hold (crm.service.check_field_value) is shown with "would be left out",
  as the sync leaves it out; a mapped field Stripe has no value for says so (the contact keeps its value).
- Nothing is written to the database.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import stripe

from webapp.crm.service import ValidationError, check_field_value
from webapp.crypto import decrypt
from webapp.extensions import db
from webapp.stripe_sync.apply.contacts import plan_field_writes
from webapp.stripe_sync.apply.customer import resolve_customer_data
from webapp.stripe_sync.client import StripeProblem, client_for_account, describe, make_client
from webapp.stripe_sync.connect.fields import label_for, misfit_reason
from webapp.stripe_sync.connect.mapping import ROLE_EMAIL, MappingRow, settle_name_target
from webapp.stripe_sync.events import resource as resource_spec
from webapp.stripe_sync.models import StripeAccount

log = logging.getLogger(__name__)

# (one, many) of what each resource lists, for the sentences of the preview.
NOUNS = {"customer": ("customer", "customers"), "charge": ("charge", "charges"),
         "subscription": ("subscription", "subscriptions"), "invoice": ("invoice", "invoices"),
         "checkout_session": ("completed Checkout Session", "completed Checkout Sessions")}
NO_CUSTOMERS = "No customers in this Stripe account yet."


@dataclass
class PreviewLine:
    """One CRM field as the contact would get it."""

    label: str
    value: str | None  # None: nothing is written
    note: str | None = None
    left_out: bool = False


@dataclass
class Preview:
    """The fragment's content: a message alone (nothing to show), or the source and its lines."""

    message: str | None = None
    source: str | None = None
    lines: list[PreviewLine] = field(default_factory=list)
    failed: bool = False  # Stripe could not be asked


def _fetch_newest(client: stripe.StripeClient, kind: str) -> dict | None:
    """The newest object of the resource's list, with its customer expanded; None when there is none."""
    spec = resource_spec(kind)
    params = spec.history.list_params(limit=1)
    if kind != "customer":
        params["expand"] = ["data.customer"]
    data = client.raw_request("get", spec.history.api_path, **params).data
    found = list((data or {}).get("data") or [])
    return found[0] if found else None


def _left_out(crm, value: str) -> str | None:
    """Why the CRM would leave this value out of the field, or None when it fits."""
    try:
        check_field_value(crm, value)
    except ValidationError as exc:
        if crm.type == "number":
            return f"would be left out: “{value}” is not a number"
        if crm.type == "date":
            return f"would be left out: “{value}” is not a date (YYYY-MM-DD)"
        if crm.type == "dropdown":
            return f"would be left out: “{value}” is not one of the options of {crm.label}"
        return "would be left out: " + next(iter(exc.errors.values()), "the field cannot hold it")
    return None


def _row_lines(row: MappingRow, crm, customer, fields_by_key: dict) -> list[PreviewLine]:
    """The lines one row produces: the split name gives two, any other row one."""
    writes = plan_field_writes([(row.stripe_field, crm.key)], customer)
    stripe_label = label_for(row.stripe_field)
    if not writes:
        target = "First Name + Last Name" if row.splits_name and crm.key == "first_name" else crm.label
        return [PreviewLine(target, None, f"Stripe has no {stripe_label} for this customer; the contact keeps "
                                          "what it has.")]
    refused = misfit_reason(row.stripe_field, crm.label, crm.type) if row.role != ROLE_EMAIL else None
    lines = []
    for key, value in writes.items():
        target = fields_by_key.get(key, crm)
        note = _left_out(target, value) if value else None
        if note is None and refused:
            note = f"Finish refuses this row: {refused}"
        if not value:
            note = note or "left empty: the name is one word"
        lines.append(PreviewLine(target.label, value, note, left_out=bool(note and note.startswith("would be"))))
    return lines


def _source(kind: str, obj: dict, customer) -> str:
    """Which Stripe record the preview shows, in words."""
    who = " · ".join(p for p in (customer.name, customer.email, customer.id) if p) or "no name or email"
    if kind == "customer":
        return f"The newest customer in this Stripe account: {who}."
    noun = NOUNS.get(kind, (kind, kind))[0]
    return f"The customer of the newest {noun} in this Stripe account ({obj.get('id')}): {who}."


def build_preview(kind: str, obj: dict | None, rows: list[MappingRow], fields_by_id: dict) -> Preview:
    """The preview of these rows for one listed Stripe object (None: the account has none)."""
    if obj is None:
        if kind == "customer":
            return Preview(message=NO_CUSTOMERS)
        plural = NOUNS.get(kind, (kind, kind + "s"))[1]
        return Preview(message=f"No {plural} in this Stripe account yet, so there is no recent customer to preview.")
    spec = resource_spec(kind)
    customer = resolve_customer_data(spec.event_types[0], obj)
    preview = Preview(source=_source(kind, obj, customer))
    fields_by_key = {f.key: f for f in fields_by_id.values()}
    for row in rows:
        settle_name_target(row, fields_by_id)
        crm = fields_by_id.get(row.field_id) if row.field_id is not None else None
        if not row.stripe_field or crm is None:
            continue
        if row.role == ROLE_EMAIL:
            email = customer.email
            preview.lines.append(PreviewLine("Email", email, None if email else
                                             "Stripe has no email for this customer, so an event about them "
                                             "would be skipped."))
            continue
        preview.lines.extend(_row_lines(row, crm, customer, fields_by_key))
    return preview


def run_preview(client: stripe.StripeClient, kind: str, rows: list[MappingRow], fields_by_id: dict) -> Preview:
    """Ask Stripe once and build the preview; any failure is a message, never an exception."""
    try:
        obj = _fetch_newest(client, kind)
    except stripe.StripeError as exc:
        problem = describe(exc)
        log.info("mapping preview: Stripe answered %s", problem.kind)
        return Preview(message=problem.message, failed=True)
    except Exception as exc:  # noqa: BLE001 - a preview never fails the page
        log.warning("mapping preview: listing %s failed: %s", kind, type(exc).__name__)
        return Preview(message=describe(exc).message, failed=True)
    return build_preview(kind, obj, rows, fields_by_id)


def preview_for_draft(draft, rows: list[MappingRow], fields_by_id: dict) -> Preview:
    """The connect flow's preview, with the draft's key (or its account's stored key)."""
    if not draft.kind:
        return Preview(message="Choose a resource first.", failed=True)
    try:
        if draft.account_id:
            client = client_for_account(db.session.get(StripeAccount, draft.account_id), max_network_retries=0)
        else:
            client = make_client(decrypt(draft.secret_key_enc), max_network_retries=0)
    except StripeProblem as exc:
        return Preview(message=exc.message, failed=True)
    return run_preview(client, draft.kind, rows, fields_by_id)


def preview_for_resource(resource, rows: list[MappingRow], fields_by_id: dict) -> Preview:
    """"Update field mapping"'s preview, with the connected account's stored key."""
    try:
        client = client_for_account(resource.account, max_network_retries=0)
    except StripeProblem as exc:
        return Preview(message=exc.message, failed=True)
    return run_preview(client, resource.kind, rows, fields_by_id)
