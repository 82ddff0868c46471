"""Field-mapping rows: parse them from a form, validate them, store them on a resource."""
from dataclasses import dataclass, field as dc_field

from webapp.numbers import whole_number
from webapp.stripe_sync.connect.fields import (
    is_known_key, label_for, metadata_key, misfit_reason, stripe_field_choices, value_fits,
)

ROLE_EMAIL = "email"  # row 1: a Stripe field → the CRM Email field (required)
ROLE_ID = "id"        # row 2: Stripe ID → a CRM field of the user's choice (optional)
ROLE_EXTRA = "extra"  # rows added with "Add field mapping"
NAME_KEY = "name"
NAME_SPLIT_TARGETS = ("first_name", "last_name")
# Stripe offers 11 customer fields and at most 50 metadata keys, and each row fills its own CRM field:
# 100 rows is more than any real mapping, and a form of thousands is refused without being rendered.
MAX_MAPPING_ROWS = 100
TOO_MANY_ROWS = f"At most {MAX_MAPPING_ROWS} field mappings per resource; remove some rows."


@dataclass
class MappingRow:
    """One row as the form shows it; field_id is the CRM ContactField id."""

    role: str
    stripe_field: str = ""
    field_id: int | None = None
    error: str | None = None

    @property
    def splits_name(self) -> bool:
        """Customer Name into First or Last Name fills both."""
        return self.stripe_field == NAME_KEY


@dataclass
class MappingResult:
    """Validated rows plus the messages to show."""

    rows: list[MappingRow]
    general: list[str] = dc_field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No row or general error."""
        return not self.general and not any(r.error for r in self.rows)


def default_rows(email_field_id: int) -> list[MappingRow]:
    """The two rows the mapping step starts with."""
    return [MappingRow(ROLE_EMAIL, "email", email_field_id), MappingRow(ROLE_ID, "id", None)]


def rows_from_form(form, email_field_id: int) -> list[MappingRow]:
    """Rebuild rows from parallel lists row_role / stripe_field / crm_field, keeping what was chosen."""
    roles = form.getlist("row_role")[:MAX_MAPPING_ROWS + 1]  # one past the cap, for validate() to refuse
    stripe_fields = form.getlist("stripe_field")
    crm_fields = form.getlist("crm_field")
    rows = []
    for i, role in enumerate(roles):
        role = role if role in (ROLE_EMAIL, ROLE_ID, ROLE_EXTRA) else ROLE_EXTRA
        stripe_key = (stripe_fields[i] if i < len(stripe_fields) else "").strip()
        raw_field = (crm_fields[i] if i < len(crm_fields) else "").strip()
        field_id = whole_number(raw_field)
        if role == ROLE_EMAIL:
            field_id = email_field_id
        if role == ROLE_ID:
            stripe_key = "id"
        rows.append(MappingRow(role, stripe_key, field_id))
    return rows


def rows_from_mappings(mappings, email_field_id: int) -> list[MappingRow]:
    """Rows for editing a stored mapping, in the form's order."""
    rows = [MappingRow(ROLE_EMAIL, "email", email_field_id), MappingRow(ROLE_ID, "id", None)]
    for m in mappings:
        if m.field_id == email_field_id:
            rows[0].stripe_field = m.stripe_field
        elif m.stripe_field == "id" and rows[1].field_id is None:
            rows[1].field_id = m.field_id
        else:
            rows.append(MappingRow(ROLE_EXTRA, m.stripe_field, m.field_id))
    return rows


def validate(rows: list[MappingRow], fields_by_id: dict, metadata_keys=()) -> MappingResult:
    """Check every rule the mapping step promises, marking the row that breaks it."""
    result = MappingResult(rows=rows)
    if len(rows) > MAX_MAPPING_ROWS:
        result.general.append(TOO_MANY_ROWS)
        return result
    known_meta = set(metadata_keys)
    email_rows = [r for r in rows if r.role == ROLE_EMAIL]
    if not email_rows or not email_rows[0].stripe_field:
        result.general.append("Choose the Stripe field to sync into Email; Email is required.")
    used: dict[int, int] = {}  # field id → row index that claimed it
    key_to_id = {f.key: f.id for f in fields_by_id.values()}
    for index, row in enumerate(rows):
        if row.role == ROLE_EXTRA and not row.stripe_field and row.field_id is None:
            continue
        if row.role == ROLE_ID and row.field_id is None:
            continue
        if not row.stripe_field or row.field_id is None:
            row.error = "Choose both a Stripe field and a CRM field, or remove the row."
            continue
        meta = metadata_key(row.stripe_field)
        if not is_known_key(row.stripe_field) or (meta is not None and known_meta and meta not in known_meta):
            row.error = "That Stripe field is not available for this account."
            continue
        crm = fields_by_id.get(row.field_id)
        if crm is None:
            row.error = "That CRM field no longer exists; choose another."
            continue
        if row.role == ROLE_EMAIL and not (value_fits(row.stripe_field, "email") or meta is not None):
            row.error = f"{label_for(row.stripe_field)} is not an email address, so it cannot fill Email."
            continue
        if row.role != ROLE_EMAIL:
            reason = misfit_reason(row.stripe_field, crm.label, crm.type)
            if reason:
                row.error = reason
                continue
        targets = [crm.id]
        if row.splits_name and crm.key in NAME_SPLIT_TARGETS:
            targets = [key_to_id[k] for k in NAME_SPLIT_TARGETS if k in key_to_id]
        for target in targets:
            if target in used:
                other = fields_by_id[target].label
                row.error = (f"“{other}” is already filled by another row"
                             + (" (Customer Name fills First Name and Last Name)." if row.splits_name or
                                rows[used[target]].splits_name else ".") + " Choose another CRM field.")
                break
        if row.error is None:
            for target in targets:
                used[target] = index
    return result


def effective_rows(result: MappingResult) -> list[MappingRow]:
    """The rows worth storing: complete ones, in order."""
    return [r for r in result.rows if r.stripe_field and r.field_id is not None]


def choices(metadata_keys=()) -> list[tuple[str, str]]:
    """Stripe field options for the selects."""
    return stripe_field_choices(metadata_keys)
