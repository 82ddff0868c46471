"""Field-mapping rows: parse them from a form, validate them, store them on a resource.

Customer Name decisions:
- A Customer Name row targets "First Name + Last Name" unless the user picks one text field for the
  whole name. That target is stored as `name → First Name` (what the sync's name split reads), so a
  Customer Name row with no CRM field posted (nothing to guess) and one posted with Last Name (the
  split fills both anyway) are stored the same way. A CRM field that was posted but is no id at all
  (crafted) is still refused.

Each row carries a `key` (a short token posted as `row_key`), so "Create field" finds its row even after
rows above it were removed in the browser, and the row's open "Create field" form posts as
`new_label_<key>` / `new_type_<key>` / `new_options_<key>`.
"""
import re
import secrets
from dataclasses import dataclass, field as dc_field

from webapp.crm.service import ValidationError, create_field
from webapp.extensions import db
from webapp.numbers import whole_number
from webapp.stripe_sync.connect.fields import (
    NAME_SPLIT_NOTE, is_known_key, label_for, metadata_key, misfit_reason, stripe_field_choices, value_fits,
)

ROLE_EMAIL = "email"  # row 1: a Stripe field → the CRM Email field (required)
ROLE_ID = "id"        # row 2: Stripe ID → a CRM field of the user's choice (optional)
ROLE_EXTRA = "extra"  # rows added with "Add field mapping"
ROLES = (ROLE_EMAIL, ROLE_ID, ROLE_EXTRA)
NAME_KEY = "name"
NAME_SPLIT_TARGETS = ("first_name", "last_name")
SPLIT_LABEL = "First Name + Last Name"
# Stripe offers 11 customer fields and at most 50 metadata keys, and each row fills its own CRM field:
# 100 rows is more than any real mapping, and a form of thousands is refused without being rendered.
MAX_MAPPING_ROWS = 100
TOO_MANY_ROWS = f"At most {MAX_MAPPING_ROWS} field mappings per resource; remove some rows."
ROW_GONE = "That mapping row is no longer there; add it again with “Add field mapping”."
_KEY_RE = re.compile(r"[A-Za-z0-9]{1,24}")
# The custom field types "Create field" offers (webapp/crm/models.FIELD_TYPES), in the CRM's order.
CREATABLE_TYPES = (("text", "Text"), ("number", "Number"), ("date", "Date"), ("dropdown", "Dropdown"))


def new_row_key() -> str:
    """A fresh token naming one rendered row."""
    return secrets.token_hex(4)


@dataclass
class NewField:
    """A row's open "Create field" form, as the user typed it."""

    label: str = ""
    type: str = "text"
    options: str = ""
    error: str | None = None


@dataclass
class MappingRow:
    """One row as the form shows it; field_id is the CRM ContactField id."""

    role: str
    stripe_field: str = ""
    field_id: int | None = None
    error: str | None = None
    key: str = dc_field(default_factory=new_row_key)
    bad_field: bool = False  # a CRM field was posted that is no id at all
    new_field: NewField | None = None
    focus: str | None = None  # "crm" or "new_label": what gets autofocus when the row is rendered again

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


def _clean_key(raw: str, seen: set[str]) -> str:
    """The posted row key when it is a plain unused token, else a fresh one."""
    key = (raw or "").strip()
    if not _KEY_RE.fullmatch(key) or key in seen:
        key = new_row_key()
    seen.add(key)
    return key


def new_field_from_form(form, key: str) -> NewField | None:
    """The row's open "Create field" form, when its inputs were posted."""
    if f"new_label_{key}" not in form:
        return None
    return NewField(label=form.get(f"new_label_{key}", ""), type=form.get(f"new_type_{key}", "text"),
                    options=form.get(f"new_options_{key}", ""))


def rows_from_form(form, email_field_id: int) -> list[MappingRow]:
    """Rebuild rows from parallel lists row_role / stripe_field / crm_field, keeping what was chosen."""
    roles = form.getlist("row_role")[:MAX_MAPPING_ROWS + 1]  # one past the cap, for validate() to refuse
    stripe_fields = form.getlist("stripe_field")
    crm_fields = form.getlist("crm_field")
    keys = form.getlist("row_key")
    seen: set[str] = set()
    rows = []
    for i, role in enumerate(roles):
        role = role if role in ROLES else ROLE_EXTRA
        stripe_key = (stripe_fields[i] if i < len(stripe_fields) else "").strip()
        raw_field = (crm_fields[i] if i < len(crm_fields) else "").strip()
        field_id = whole_number(raw_field)
        if role == ROLE_EMAIL:
            field_id = email_field_id
        if role == ROLE_ID:
            stripe_key = "id"
        key = _clean_key(keys[i] if i < len(keys) else "", seen)
        rows.append(MappingRow(role, stripe_key, field_id, key=key, bad_field=bool(raw_field) and field_id is None,
                               new_field=new_field_from_form(form, key)))
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


def find_row(rows: list[MappingRow], key: str | None) -> int | None:
    """The index of the row with this key; None when no posted row has it."""
    key = (key or "").strip()
    for index, row in enumerate(rows):
        if row.key == key:
            return index
    return None


# --- Customer Name targets ------------------------------------------------------------------------

def _ids_by_key(fields_by_id: dict) -> dict[str, int]:
    """CRM field ids by their key (first_name, custom_7, ...)."""
    return {f.key: f.id for f in fields_by_id.values()}


def settle_name_target(row: MappingRow, fields_by_id: dict) -> None:
    """A Customer Name row without a CRM field, or with Last Name, targets the split (stored as First Name)."""
    if not row.splits_name or row.bad_field:
        return
    ids = _ids_by_key(fields_by_id)
    split_ids = [ids[k] for k in NAME_SPLIT_TARGETS if k in ids]
    if "first_name" in ids and (row.field_id is None or row.field_id in split_ids):
        row.field_id = ids["first_name"]


def carry_over(row: MappingRow, was_name: bool, fields_by_id: dict) -> None:
    """Across a switch to or from Customer Name, drop a CRM choice that would no longer mean what was picked."""
    ids = _ids_by_key(fields_by_id)
    split_ids = {ids[k] for k in NAME_SPLIT_TARGETS if k in ids}
    crm = fields_by_id.get(row.field_id) if row.field_id is not None else None
    if was_name and not row.splits_name and row.field_id in split_ids:
        row.field_id = None
    elif not was_name and row.splits_name and crm is not None and not value_fits(NAME_KEY, crm.type):
        row.field_id = None
    settle_name_target(row, fields_by_id)


def name_targets(fields_by_id: dict) -> dict:
    """What a Customer Name row's CRM select offers: the split, its hidden aliases, and whole-name fields."""
    ids = _ids_by_key(fields_by_id)
    whole = [f for f in sorted(fields_by_id.values(), key=lambda f: (not getattr(f, "is_standard", False), f.id))
             if f.key not in ("email", *NAME_SPLIT_TARGETS) and value_fits(NAME_KEY, f.type)]
    return {"split_id": ids.get("first_name"), "last_id": ids.get("last_name"), "label": SPLIT_LABEL,
            "whole": whole}


def creatable_types(stripe_key: str) -> list[tuple[str, str]]:
    """Custom field types "Create field" offers for a row: those its Stripe field fits (all, when none is chosen)."""
    if not stripe_key:
        return list(CREATABLE_TYPES)
    return [(t, label) for t, label in CREATABLE_TYPES if value_fits(stripe_key, t)]


class RowGone(Exception):
    """"Create field" named a row the posted form does not have."""


def create_field_in_row(rows: list[MappingRow], key: str | None) -> tuple[MappingRow, str | None]:
    """Make the row's typed field with the CRM's own rules and select it there; (row, None | "clash" | "invalid")."""
    index = find_row(rows, key)
    if index is None or rows[index].role == ROLE_EMAIL:
        raise RowGone(ROW_GONE)
    row = rows[index]
    typed = row.new_field or NewField()
    row.new_field, row.focus = typed, "new_label"
    allowed = [t for t, _label in creatable_types(row.stripe_field)]
    if typed.type not in allowed:
        typed.error = f"Choose a type that can hold {label_for(row.stripe_field)}." if row.stripe_field \
            else "Choose a field type."
        return row, "invalid"
    try:
        made = create_field(typed.label, typed.type, typed.options)
    except ValidationError as exc:
        db.session.rollback()
        typed.error = " ".join(exc.errors.values())
        label_error = exc.errors.get("label", "")
        return row, "clash" if ("already exists" in label_error or "standard field" in label_error) else "invalid"
    row.field_id, row.new_field, row.focus, row.bad_field = made.id, None, "crm", False
    return row, None


# --- validation -----------------------------------------------------------------------------------

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
    key_to_id = _ids_by_key(fields_by_id)
    for index, row in enumerate(rows):
        if row.role == ROLE_EXTRA and not row.stripe_field and row.field_id is None:
            continue
        if row.role == ROLE_ID and row.field_id is None:
            continue
        settle_name_target(row, fields_by_id)
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


def editor_context(fields_by_id: dict, email_field_id: int, metadata_keys=()) -> dict:
    """What every mapping-rows template needs besides the rows, in one place for all the views."""
    return {"stripe_choices": choices(metadata_keys or ()), "crm_fields": list(fields_by_id.values()),
            "name_note": NAME_SPLIT_NOTE, "email_field_id": email_field_id, "name_targets": name_targets(fields_by_id),
            "creatable_types": creatable_types}
