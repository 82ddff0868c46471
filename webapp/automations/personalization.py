"""Personalization tags: the catalogue the email editor offers, the values one contact and one
Stripe event give them, and rendering an email with those values. Pure functions: the database
lookups that feed them live in context.py.

Decisions:
- A tag is `%NAME%` (letters, digits, underscores); matching ignores case, so `%firstname%` works.
- The body is HTML. Values are HTML-escaped when substituted, so a customer named
  `<script>` stays text. A body without a single HTML tag is plain text: it is escaped as a whole,
  its line breaks become `<br>` and its web addresses become links, so "Pay here:
  %STRIPE_INVOICE_URL%" is a working link either way. The text/plain part is derived from the HTML.
- The subject is plain text: values go in unescaped and line breaks collapse to spaces.
- A known tag with no value renders empty; an unknown tag stays visible as typed, and the
  preview marks it (`mark_unknown`) and lists it.
- Amounts are formatted for their currency by stripe_sync.money (zero-decimal currencies such as
  JPY have no cents); dates read "September 17, 2026" (UTC).
- A custom field's tag comes from its label: upper-cased, each run of other characters one
  underscore ("Plan tier" → %PLAN_TIER%). A name already taken (by a built-in tag or an earlier
  custom field) gets a suffix: %PLAN_TIER_2%.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html.parser import HTMLParser
from typing import Any

from markupsafe import escape

from webapp.stripe_sync.apply.commerce_data import recurring_payment_from_subscription
from webapp.money import format_amount

TAG_RE = re.compile(r"%([A-Za-z][A-Za-z0-9_]*)%")
HTML_TAG_RE = re.compile(r"<(?:[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?|/[A-Za-z][A-Za-z0-9]*\s*)/?>")
URL_RE = re.compile(r"https?://[^\s<>\"\x00\x01]*[^\s<>\".,;:!?)\]'\x00\x01]")
UNKNOWN_RE = re.compile(r"\x00([^\x00\x01]*)\x01")


@dataclass(frozen=True)
class TagInfo:
    """One personalization tag as the picker lists it."""

    name: str  # without the percent signs
    label: str

    @property
    def token(self) -> str:
        """What the marketer types: %NAME%."""
        return f"%{self.name}%"


CONTACT_TAGS = (
    TagInfo("FIRSTNAME", "First name"),
    TagInfo("LASTNAME", "Last name"),
    TagInfo("EMAIL", "Email"),
    TagInfo("PHONE", "Phone"),
)
STRIPE_TAGS = (
    TagInfo("STRIPE_EVENT_TYPE", "Event type"),
    TagInfo("STRIPE_AMOUNT", "Amount, formatted for its currency"),
    TagInfo("STRIPE_CURRENCY", "Currency"),
    TagInfo("STRIPE_PRODUCT_NAME", "Product name"),
    TagInfo("STRIPE_SUBSCRIPTION_STATUS", "Subscription status"),
    TagInfo("STRIPE_TRIAL_END", "Trial end date"),
    TagInfo("STRIPE_INVOICE_URL", "Invoice link (pay or update the card)"),
    TagInfo("STRIPE_RECEIPT_URL", "Receipt link"),
)
ECOMMERCE_TAGS = (
    TagInfo("ECOM_TOTAL_REVENUE", "Total revenue"),
    TagInfo("ECOM_TOTAL_ORDERS", "Total orders"),
    TagInfo("ECOM_LAST_ORDER_DATE", "Last order date"),
    TagInfo("ECOM_LAST_ORDER_AMOUNT", "Last order amount"),
)
BUILT_IN = {t.name for t in CONTACT_TAGS + STRIPE_TAGS + ECOMMERCE_TAGS}


# --- the catalogue -----------------------------------------------------------------------------

def tag_name_for_label(label: str) -> str:
    """"Plan tier" → "PLAN_TIER"; a label with no letters or digits gives "FIELD"."""
    name = re.sub(r"[^A-Z0-9]+", "_", label.upper()).strip("_")
    if not name:
        return "FIELD"
    return name if name[0].isalpha() else f"FIELD_{name}"


def custom_field_tags(fields: Iterable[tuple[int, str]]) -> dict[int, TagInfo]:
    """One tag per custom field (id, label), in the given order; clashes get _2, _3..."""
    taken = set(BUILT_IN)
    tags: dict[int, TagInfo] = {}
    for field_id, label in fields:
        base = tag_name_for_label(label)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        tags[field_id] = TagInfo(name, label)
    return tags


def tag_sections(custom: Mapping[int, TagInfo]) -> list[tuple[str, list[TagInfo]]]:
    """The picker's groups, in the order the editor shows them."""
    return [("Contact", [*CONTACT_TAGS, *custom.values()]), ("Stripe", list(STRIPE_TAGS)),
            ("E-commerce", list(ECOMMERCE_TAGS))]


# --- values --------------------------------------------------------------------------------------

def format_date(value: datetime | int | None) -> str | None:
    """A date as an email reads it: "September 17, 2026" (epoch seconds and naive UTC alike)."""
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, datetime):
        try:
            value = datetime.fromtimestamp(int(value), timezone.utc)
        except (TypeError, ValueError, OverflowError, OSError):
            return None
    return f"{value:%B} {value.day}, {value.year}"


def money(amount: int | None, currency: str | None) -> str | None:
    """Formatted for the currency, or None (renders empty) when there is no amount."""
    if amount is None or isinstance(amount, bool):
        return None
    try:
        return format_amount(int(amount), currency)
    except (TypeError, ValueError):
        return None


def contact_values(first_name: str, last_name: str, email: str, phone: str,
                   custom: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """The contact tags; `custom` is keyed by tag name."""
    values = {"FIRSTNAME": first_name, "LASTNAME": last_name, "EMAIL": email, "PHONE": phone}
    values.update(custom or {})
    return values


@dataclass
class Known:
    """What the CRM knows about an event's object beyond the payload (looked up by context.py)."""

    product_name: str | None = None          # an order's products, an invoice's subscription
    subscription_status: str | None = None   # Stripe's status of an invoice's subscription
    trial_end: datetime | int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _humanise_status(status: Any) -> str | None:
    """Stripe's "past_due" reads "past due" in an email."""
    return str(status).replace("_", " ") if status else None


def stripe_values(event: Mapping[str, Any] | None, known: Known | None = None) -> dict[str, str | None]:
    """The Stripe tags for one event (the raw event JSON); tags an object lacks stay None."""
    values: dict[str, str | None] = {t.name: None for t in STRIPE_TAGS}
    if not event:
        return values
    known = known or Known()
    event_type = str(event.get("type") or "")
    obj = (event.get("data") or {}).get("object") or {}
    kind = obj.get("object")
    currency = obj.get("currency")
    amount = None
    product = known.product_name
    status = known.subscription_status
    trial_end = known.trial_end
    if kind == "charge":
        amount = obj.get("amount")
        if event_type == "charge.refunded" and obj.get("amount_refunded"):
            amount = obj.get("amount_refunded")
        values["STRIPE_RECEIPT_URL"] = obj.get("receipt_url")
    elif kind == "invoice":
        amount = obj.get("amount_paid") if obj.get("status") == "paid" else obj.get("amount_due")
        values["STRIPE_INVOICE_URL"] = obj.get("hosted_invoice_url")
        if not product:
            lines = (obj.get("lines") or {}).get("data") or []
            product = lines[0].get("description") if lines else None
    elif kind == "checkout.session":
        amount = obj.get("amount_total")
    elif kind == "subscription":
        data = recurring_payment_from_subscription(obj)
        amount, currency = data.get("amount"), data.get("currency") or currency
        product = product or data.get("name")
        status = obj.get("status")
        trial_end = obj.get("trial_end")
    values["STRIPE_EVENT_TYPE"] = event_type or None
    values["STRIPE_AMOUNT"] = money(amount, currency)
    values["STRIPE_CURRENCY"] = str(currency).upper() if currency else None
    values["STRIPE_PRODUCT_NAME"] = product
    values["STRIPE_SUBSCRIPTION_STATUS"] = _humanise_status(status)
    values["STRIPE_TRIAL_END"] = format_date(trial_end)
    return values


def ecommerce_values(total_revenue: int | None = None, total_orders: int | None = None,
                     currency: str | None = None, last_order_at: datetime | None = None,
                     last_order_amount: int | None = None) -> dict[str, str | None]:
    """The e-commerce tags from a contact's E-commerce Customer (all None when there is none)."""
    return {
        "ECOM_TOTAL_REVENUE": money(total_revenue, currency) if currency else None,
        "ECOM_TOTAL_ORDERS": None if total_orders is None else str(total_orders),
        "ECOM_LAST_ORDER_DATE": format_date(last_order_at),
        "ECOM_LAST_ORDER_AMOUNT": money(last_order_amount, currency),
    }


# --- rendering -----------------------------------------------------------------------------------

@dataclass
class RenderedEmail:
    """An email ready for the outbox, plus the tags nobody knew (for the preview)."""

    subject: str
    html: str
    text: str
    unknown: list[str]


def _substitute(template: str, values: Mapping[str, Any], value_fn, unknown_fn, unknown: list[str]) -> str:
    """Replace every %TAG%: known ones through value_fn (None as ""), unknown ones through unknown_fn."""
    def sub(match):
        """One tag's replacement."""
        name = match.group(1).upper()
        if name in values:
            value = values[name]
            return value_fn("" if value is None else str(value))
        token = match.group(0)
        if token not in unknown:
            unknown.append(token)
        return unknown_fn(token)
    return TAG_RE.sub(sub, template)


def is_html(body: str) -> bool:
    """Whether the marketer wrote HTML (any tag at all) rather than plain text."""
    return bool(HTML_TAG_RE.search(body or ""))


def _mark(token: str) -> str:
    """How the preview flags an unknown tag."""
    return f'<mark class="unknown-tag" title="Unknown personalization tag">{escape(token)}</mark>'


def _plain_to_html(text: str) -> str:
    """Escape, link web addresses, keep line breaks."""
    escaped = str(escape(text))
    linked = URL_RE.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
    return linked.replace("\r\n", "\n").replace("\n", "<br>\n")


def render_subject(subject: str, values: Mapping[str, Any], unknown: list[str] | None = None) -> str:
    """Plain text on one line: values unescaped (a header, not HTML)."""
    text = _substitute(subject or "", values, lambda v: v, lambda t: t, [] if unknown is None else unknown)
    return " ".join(text.split())


def render_body(body: str, values: Mapping[str, Any], *, mark_unknown: bool = False,
                unknown: list[str] | None = None) -> str:
    """The HTML body with values escaped; unknown tags kept (and marked for the preview)."""
    unknown = [] if unknown is None else unknown
    body = (body or "").replace("\x00", "").replace("\x01", "")
    if is_html(body):
        return _substitute(body, values, lambda v: str(escape(v)), _mark if mark_unknown else (lambda t: t), unknown)
    clean = {k: (None if v is None else str(v).replace("\x00", "").replace("\x01", "")) for k, v in values.items()}
    text = _substitute(body, clean, lambda v: v, lambda t: f"\x00{t}\x01", unknown)
    html = _plain_to_html(text)
    return UNKNOWN_RE.sub(lambda m: _mark(m.group(1)) if mark_unknown else str(escape(m.group(1))), html)


def render_email(subject: str, body: str, values: Mapping[str, Any], *, mark_unknown: bool = False
                 ) -> RenderedEmail:
    """Subject, HTML and text parts for one contact and event."""
    unknown: list[str] = []
    rendered_subject = render_subject(subject, values, unknown)
    html = render_body(body, values, mark_unknown=mark_unknown, unknown=unknown)
    text = html_to_text(render_body(body, values) if mark_unknown else html)
    return RenderedEmail(rendered_subject, html, text, unknown)


class _TextExtractor(HTMLParser):
    """HTML to readable text: blocks on their own lines, links followed by their address."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table",
              "blockquote", "hr", "section", "header", "footer"}

    def __init__(self):
        """Collected text parts, open links and the depth of skipped elements."""
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[tuple[str, int]] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        """Blocks start a line; links remember where their text starts."""
        if tag in ("style", "script", "head", "title"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.parts)))

    def handle_endtag(self, tag):
        """Blocks end a line; a link adds its address when its text is not the address."""
        if tag in ("style", "script", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag in ("p", "div", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"):
            self.parts.append("\n")
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            shown = "".join(self.parts[start:]).strip()
            if href and href != shown and not href.startswith(("mailto:", "#")):
                self.parts.append(f" ({href})")

    def handle_data(self, data):
        """Text with its whitespace collapsed, as a browser shows it."""
        if not self.skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """The text/plain alternative of an HTML body."""
    parser = _TextExtractor()
    parser.feed(html or "")
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
