"""Domain functions for contacts, custom fields and tags; views and the Stripe sync call these."""
import math
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from webapp.crm import hand_edits, hooks, search
from webapp.crm.models import (
    FIELD_TYPES, STANDARD_FIELDS, Contact, ContactField, ContactFieldValue, ContactTag, Tag,
)
from webapp.extensions import db

STANDARD_KEYS = {key for key, _label, _type in STANDARD_FIELDS}
STANDARD_LABELS = {label.lower() for _key, label, _type in STANDARD_FIELDS}
# A dropdown holds every country (about 250) with room to spare; an option is as long as a tag name.
MAX_OPTIONS = 500
MAX_OPTION_LENGTH = 200
# A search that matches more contacts than this says "10,000+" instead of counting them all (a
# whole pass over the table for a term like the shared email domain).
COUNT_STEP = 10_000


class ValidationError(Exception):
    """Carries one message per form field so the form can show each next to its input."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def normalise_email(raw: str | None) -> str:
    """Return a syntactically valid address or raise ValidationError on the email field."""
    raw = (raw or "").strip()
    if not raw:
        raise ValidationError({"email": "Email is required."})
    normalised = _validated(raw)
    if normalised is None:
        raise ValidationError({"email": "Enter a valid email address, like name@example.com."})
    return normalised


@lru_cache(maxsize=4096)
def _validated(raw: str) -> str | None:
    """email_validator's verdict, remembered: the same customers' addresses arrive event after event,
    and validating one costs more than the rest of an event's CPU work in a batch."""
    try:
        return validate_email(raw, check_deliverability=False, test_environment=True).normalized
    except EmailNotValidError:
        return None


@dataclass
class Page:
    """One page of a list and what the pager needs."""

    items: list
    total: int
    page: int
    per_page: int
    capped: bool = False  # more than `total` match: the list says "10,000+", and Next stays

    @property
    def total_label(self) -> str:
        """How many, as the list shows it: "1,234", or "10,000+" when counting stopped there."""
        return "{:,}".format(self.total) + ("+" if self.capped else "")

    @property
    def pages_label(self) -> str:
        """The pager's "of N" (with "+" when counting stopped)."""
        return "{:,}".format(self.pages) + ("+" if self.capped else "")

    @property
    def pages(self) -> int:
        """Number of pages, at least one."""
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        """Whether a previous page exists."""
        return self.page > 1

    @property
    def has_next(self) -> bool:
        """Whether a next page exists."""
        return self.page < self.pages or self.capped


def search_contacts(q: str = "", tag_id: int | None = None, page: int = 1, per_page: int = 50,
                    sort: str | search.Sort | None = None) -> Page:
    """One page of contacts by search, tag and whitelisted order (rules in crm/search.py)."""
    # A search counts in steps of COUNT_STEP, far enough to cover the page asked for.
    cap = COUNT_STEP * max(1, math.ceil(max(1, page) * per_page / COUNT_STEP))
    listing = search.Listing(q, tag_id, sort if isinstance(sort, search.Sort) else search.parse_sort(sort),
                             count_cap=cap)
    capped = listing.capped
    total = listing.count_cap if capped else listing.count()
    page = max(1, min(page, max(1, math.ceil(total / per_page))))
    ids = listing.page_ids(per_page, (page - 1) * per_page) if total else []
    loaded = {c.id: c for c in db.session.scalars(
        select(Contact).where(Contact.id.in_(ids)).options(selectinload(Contact.tag_links)))} if ids else {}
    return Page(items=[loaded[i] for i in ids if i in loaded], total=total, page=page, per_page=per_page,
                capped=capped)


def find_contact_by_email(email: str) -> Contact | None:
    """Match regardless of case."""
    return db.session.scalar(select(Contact).where(Contact.email_lower == email.strip().lower()))


def custom_fields() -> list[ContactField]:
    """Custom fields in the order the user sees them."""
    return list(db.session.scalars(
        select(ContactField).where(ContactField.is_standard.is_(False)).order_by(ContactField.position, ContactField.id)))


def all_fields() -> list[ContactField]:
    """Standard fields first, then custom ones."""
    return list(db.session.scalars(
        select(ContactField).order_by(ContactField.is_standard.desc(), ContactField.position, ContactField.id)))


def check_field_value(field: ContactField, raw: str | None) -> str:
    """Validate a custom value against its field's type and return the text to store."""
    value = (raw or "").strip()
    if not value:
        return ""
    if field.type == "number":
        try:
            number = float(value)
        except ValueError:
            raise ValidationError({f"custom_{field.id}": f"{field.label} must be a number."}) from None
        if not math.isfinite(number):
            raise ValidationError({f"custom_{field.id}": f"{field.label} must be a number."})
        return value
    if field.type == "date":
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValidationError({f"custom_{field.id}": f"{field.label} must be a date (YYYY-MM-DD)."}) from None
    if field.type == "dropdown" and value not in (field.options or []):
        raise ValidationError({f"custom_{field.id}": f"Choose one of the options for {field.label}."})
    return value


def save_contact(contact: Contact | None, data: dict, custom: dict[int, str] | None = None) -> Contact:
    """Create or edit a contact by hand, keeping email valid and unique regardless of case."""
    errors: dict[str, str] = {}
    try:
        email = normalise_email(data.get("email"))
    except ValidationError as exc:
        errors.update(exc.errors)
        email = None
    if email:
        clash = find_contact_by_email(email)
        if clash is not None and (contact is None or clash.id != contact.id):
            errors["email"] = "A contact with this email already exists."
    checked: dict[int, str] = {}
    fields_by_id = {f.id: f for f in custom_fields()}
    for field_id, raw in (custom or {}).items():
        field = fields_by_id.get(field_id)
        if field is None:
            continue
        try:
            checked[field_id] = check_field_value(field, raw)
        except ValidationError as exc:
            errors.update(exc.errors)
    if errors:
        raise ValidationError(errors)
    before = hand_edits.snapshot(contact)
    if contact is None:
        contact = Contact(email=email)
        db.session.add(contact)
    contact.email = email
    contact.first_name = (data.get("first_name") or "").strip()
    contact.last_name = (data.get("last_name") or "").strip()
    contact.phone = (data.get("phone") or "").strip()
    contact.refresh_keys()
    for field_id, value in checked.items():
        set_custom_value(contact, fields_by_id[field_id], value)
    _commit_unique("email", "A contact with this email already exists.")
    hand_edits.record(contact, before)
    db.session.commit()
    return contact


def _commit_unique(field_name: str, message: str) -> None:
    """Commit; a unique index refusing the row becomes a message on the form field that caused it."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ValidationError({field_name: message}) from None


def set_custom_value(contact: Contact, field: ContactField, value: str) -> None:
    """Set or clear one custom value without committing."""
    existing = next((v for v in contact.values if v.field_id == field.id), None)
    if existing is None:
        if value:
            contact.values.append(ContactFieldValue(field=field, value=value))
    elif value:
        existing.value = value
    else:
        contact.values.remove(existing)


def custom_values(contact: Contact) -> dict[int, str]:
    """A contact's custom values keyed by field id."""
    return {v.field_id: v.value for v in contact.values}


# --- tags -----------------------------------------------------------------------------------

def clean_tag_name(raw: str | None) -> str:
    """Trim a tag name and reject empty or oversized ones."""
    name = " ".join((raw or "").split())
    if not name:
        raise ValidationError({"tag": "Enter a tag name."})
    if len(name) > 200:
        raise ValidationError({"tag": "Tag names are at most 200 characters."})
    return name


def get_or_create_tag(name: str) -> Tag:
    """Return the tag with this name (any case), creating it safely under concurrency."""
    name = clean_tag_name(name)
    tag = db.session.scalar(select(Tag).where(Tag.name_lower == name.lower()))
    if tag is not None:
        return tag
    try:
        with db.session.begin_nested():
            tag = Tag(name=name, name_lower=name.lower())
            db.session.add(tag)
    except IntegrityError:
        tag = db.session.scalar(select(Tag).where(Tag.name_lower == name.lower()))
    return tag


def add_tag(contact: Contact, name: str) -> Tag:
    """Tag a contact once; adding the same tag again changes nothing."""
    tag = get_or_create_tag(name)
    if not any(link.tag_id == tag.id for link in contact.tag_links):
        try:
            with db.session.begin_nested():
                contact.tag_links.append(ContactTag(tag=tag))
                db.session.flush()
        except IntegrityError:
            db.session.expire(contact, ["tag_links"])
    return tag


def remove_tag(contact: Contact, tag_id: int) -> None:
    """Untag a contact; removing an absent tag is not an error."""
    for link in list(contact.tag_links):
        if link.tag_id == tag_id:
            contact.tag_links.remove(link)


def tags_with_counts() -> list[tuple[Tag, int]]:
    """Every tag with how many contacts carry it, by name."""
    rows = db.session.execute(
        select(Tag, func.count(ContactTag.contact_id))
        .outerjoin(ContactTag, ContactTag.tag_id == Tag.id)
        .group_by(Tag.id).order_by(Tag.name_lower)
    ).all()
    return [(tag, count) for tag, count in rows]


def all_tags() -> list[Tag]:
    """Tags by name, for filters and pickers."""
    return list(db.session.scalars(select(Tag).order_by(Tag.name_lower)))


# --- custom fields --------------------------------------------------------------------------

def _check_label(label: str | None, field_id: int | None = None) -> str:
    """A field label must be present, short, and clash with no standard or other custom field."""
    label = " ".join((label or "").split())
    if not label:
        raise ValidationError({"label": "Enter a field name."})
    if len(label) > 120:
        raise ValidationError({"label": "Field names are at most 120 characters."})
    if label.lower() in STANDARD_LABELS:
        raise ValidationError({"label": f"“{label}” is a standard field; choose another name."})
    clash = db.session.scalar(select(ContactField).where(ContactField.label_lower == label.lower()))
    if clash is not None and clash.id != field_id:
        raise ValidationError({"label": f"A field named “{clash.label}” already exists."})
    return label


def parse_options(raw: str | None) -> list[str]:
    """Dropdown options: one per line, blank lines and repeats dropped, in linear time and capped."""
    seen: dict[str, None] = {}  # ordered, and a repeat costs one lookup instead of a scan of the list
    for line in (raw or "").splitlines():
        option = line.strip()
        if len(option) > MAX_OPTION_LENGTH:
            raise ValidationError({"options": f"Each option is at most {MAX_OPTION_LENGTH} characters."})
        if option:
            seen[option] = None
            if len(seen) > MAX_OPTIONS:
                raise ValidationError({"options": f"A dropdown has at most {MAX_OPTIONS} options."})
    return list(seen)


def create_field(label: str | None, type_: str | None, options_raw: str | None = "") -> ContactField:
    """Add a custom field of one of the supported types."""
    errors: dict[str, str] = {}
    try:
        label = _check_label(label)
    except ValidationError as exc:
        errors.update(exc.errors)
    if type_ not in FIELD_TYPES:
        errors["type"] = "Choose a field type."
    options = None
    if type_ == "dropdown":
        try:
            options = parse_options(options_raw)
        except ValidationError as exc:
            errors.update(exc.errors)
    if type_ == "dropdown" and options == []:
        errors["options"] = "A dropdown needs at least one option (one per line)."
    if errors:
        raise ValidationError(errors)
    position = (db.session.scalar(select(func.max(ContactField.position))) or 0) + 1
    field = ContactField(key="pending", label=label, label_lower=label.lower(), type=type_,
                         options=options, is_standard=False, position=position)
    db.session.add(field)
    db.session.flush()
    field.key = f"custom_{field.id}"
    _commit_unique("label", "A field with this name already exists.")
    return field


def rename_field(field: ContactField, label: str | None) -> ContactField:
    """Rename a custom field; standard fields keep their names."""
    if field.is_standard:
        raise ValidationError({"label": "Standard fields cannot be renamed."})
    label = _check_label(label, field.id)
    field.label, field.label_lower = label, label.lower()
    _commit_unique("label", "A field with this name already exists.")
    return field


def delete_field(field: ContactField) -> None:
    """A deleted field takes every contact's value with it, so standard fields and vetoed ones stay."""
    if field.is_standard:
        raise ValidationError({"field": "Standard fields cannot be deleted."})
    refusal = hooks.deletion_refusal(field)
    if refusal:
        raise ValidationError({"field": refusal})
    hooks.release_field(field)
    db.session.execute(db.delete(ContactFieldValue).where(ContactFieldValue.field_id == field.id))
    db.session.delete(field)
    db.session.commit()
