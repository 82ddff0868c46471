"""The actions an automation runs, in order: their kinds, their settings and how each reads.

Decisions:
- "Update a contact field" may set First Name, Last Name, Phone or a custom field, never Email (the
  contact's identity). Its value may hold personalization tags (say %STRIPE_PRODUCT_NAME% into a
  "Plan" field); a value without tags is checked against the field's type when saved, one with
  tags when the run renders it (a run skips a value the field would refuse, and logs why).
- A wait is a whole number of minutes, hours or days (at most 365 days). Seconds are accepted
  for scripts and tests but not offered in the editor.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from webapp.automations.personalization import TAG_RE
from webapp.crm.models import ContactField
from webapp.crm.service import ValidationError, check_field_value, clean_tag_name
from webapp.extensions import db
from webapp.numbers import whole_number

ADD_TAG = "add_tag"
REMOVE_TAG = "remove_tag"
UPDATE_FIELD = "update_field"
SEND_EMAIL = "send_email"
WAIT = "wait"
END = "end"
STEP_KINDS = {
    ADD_TAG: "Add tag",
    REMOVE_TAG: "Remove tag",
    UPDATE_FIELD: "Update a contact field",
    SEND_EMAIL: "Send email",
    WAIT: "Wait",
    END: "End",
}
STEP_HELP = {
    ADD_TAG: "Tag the contact (the tag is created when it does not exist).",
    REMOVE_TAG: "Take a tag off the contact.",
    UPDATE_FIELD: "Set a contact field, optionally from personalization tags.",
    SEND_EMAIL: "A personalised email, stored in the outbox and sent over SMTP.",
    WAIT: "Pause for minutes, hours or days, then carry on.",
    END: "Stop here; later actions are not run.",
}
WAIT_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}
TEST_WAIT_UNITS = {"seconds": 1, **WAIT_UNITS}
MAX_WAIT_SECONDS = 365 * 86400
UPDATABLE_STANDARD = {"first_name": 200, "last_name": 200, "phone": 64}
MAX_SUBJECT = 300
MAX_BODY = 100_000


def updatable_fields() -> list[ContactField]:
    """Fields an action may set: every field but Email, standard ones first."""
    from webapp.crm.service import all_fields

    return [f for f in all_fields() if f.key != "email"]


def row_id(raw: Any) -> int | None:
    """A posted id as an int, or None when it is not one a database column can hold."""
    return whole_number(raw, minimum=0)


def _text(raw: Mapping[str, Any], key: str) -> str:
    """A posted value as stripped text."""
    value = raw.get(key)
    return "" if value is None else str(value).strip()


def reject_nul(raw: Mapping[str, Any], *keys: str) -> None:
    """PostgreSQL text cannot hold NUL characters; say so instead of failing on the insert."""
    bad = {k: "This contains a character that is not allowed." for k in keys if "\x00" in str(raw.get(k) or "")}
    if bad:
        raise ValidationError(bad)


def clean_step(kind: str, raw: Mapping[str, Any]) -> dict:
    """Validate an action's settings; ValidationError names each bad input."""
    if kind not in STEP_KINDS:
        raise ValidationError({"kind": "Choose an action."})
    reject_nul(raw, "tag", "value", "subject", "body")
    if kind in (ADD_TAG, REMOVE_TAG):
        try:
            return {"tag": clean_tag_name(raw.get("tag"))}
        except ValidationError as exc:
            raise ValidationError({"tag": exc.errors["tag"]}) from None
    if kind == UPDATE_FIELD:
        return _clean_field_update(raw)
    if kind == SEND_EMAIL:
        errors = {}
        subject, body = _text(raw, "subject"), str(raw.get("body") or "").strip()
        if not subject:
            errors["subject"] = "Enter a subject."
        elif len(subject) > MAX_SUBJECT:
            errors["subject"] = f"Subjects are at most {MAX_SUBJECT} characters."
        if not body:
            errors["body"] = "Write the email's body."
        elif len(body) > MAX_BODY:
            errors["body"] = "The body is too long."
        if errors:
            raise ValidationError(errors)
        return {"subject": subject, "body": body}
    if kind == WAIT:
        amount, unit = _text(raw, "amount"), _text(raw, "unit")
        if unit not in TEST_WAIT_UNITS:
            raise ValidationError({"unit": "Choose minutes, hours or days."})
        if not (amount.isascii() and amount.isdigit()) or len(amount) > 9 or int(amount) < 1:
            raise ValidationError({"amount": "Enter a whole number, 1 or more."})
        if int(amount) * TEST_WAIT_UNITS[unit] > MAX_WAIT_SECONDS:
            raise ValidationError({"amount": "Waits are at most 365 days."})
        return {"amount": int(amount), "unit": unit}
    return {}


def _clean_field_update(raw: Mapping[str, Any]) -> dict:
    """A field other than Email and a value it accepts (checked now unless tags fill it later)."""
    field_id = row_id(raw.get("field_id"))
    field = db.session.get(ContactField, field_id) if field_id is not None else None
    if field is None or field.key == "email":
        raise ValidationError({"field_id": "Choose a field."})
    value = _text(raw, "value")
    if TAG_RE.search(value):
        return {"field_id": field.id, "value": value}
    if field.is_standard:
        limit = UPDATABLE_STANDARD.get(field.key, 200)
        if len(value) > limit:
            raise ValidationError({"value": f"{field.label} is at most {limit} characters."})
        return {"field_id": field.id, "value": value}
    try:
        return {"field_id": field.id, "value": check_field_value(field, value)}
    except ValidationError as exc:
        raise ValidationError({"value": next(iter(exc.errors.values()))}) from None


def wait_delay(config: Mapping[str, Any] | None) -> timedelta:
    """How long a wait action pauses the run."""
    config = config or {}
    seconds = int(config.get("amount") or 0) * TEST_WAIT_UNITS.get(config.get("unit") or "", 60)
    return timedelta(seconds=max(0, min(seconds, MAX_WAIT_SECONDS)))


def describe_wait(config: Mapping[str, Any] | None) -> str:
    """"3 days", "1 hour"."""
    config = config or {}
    amount, unit = int(config.get("amount") or 0), config.get("unit") or "minutes"
    return f"{amount} {unit[:-1] if amount == 1 else unit}"


def describe(kind: str, config: Mapping[str, Any] | None, field_labels: Mapping[int, str] | None = None) -> str:
    """One line for the action list and the run log."""
    config = config or {}
    if kind == ADD_TAG:
        return f"Add tag “{config.get('tag', '')}”"
    if kind == REMOVE_TAG:
        return f"Remove tag “{config.get('tag', '')}”"
    if kind == UPDATE_FIELD:
        label = (field_labels or {}).get(config.get("field_id"), "a deleted field")
        value = config.get("value", "")
        return f"Set {label} to “{value}”" if value else f"Clear {label}"
    if kind == SEND_EMAIL:
        return f"Send email “{config.get('subject', '')}”"
    if kind == WAIT:
        return f"Wait {describe_wait(config)}"
    if kind == END:
        return "End this automation"
    return STEP_KINDS.get(kind, kind)
