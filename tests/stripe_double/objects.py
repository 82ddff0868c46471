"""Builders for Stripe objects in the 2026-07-29.dahlia shapes the shared fixtures use (id, object, then a-z keys)."""

from __future__ import annotations

import random
import string
from typing import Any

ALPHANUM = string.ascii_letters + string.digits
DEFAULT_API_VERSION = "2026-07-29.dahlia"

# kind (our name) -> (Stripe "object" value, noun in "No such ...", list url)
KINDS: dict[str, tuple[str, str, str]] = {
    "customers": ("customer", "customer", "/v1/customers"),
    "charges": ("charge", "charge", "/v1/charges"),
    "subscriptions": ("subscription", "subscription", "/v1/subscriptions"),
    "invoices": ("invoice", "invoice", "/v1/invoices"),
    "checkout_sessions": ("checkout.session", "checkout.session", "/v1/checkout/sessions"),
    "webhook_endpoints": ("webhook_endpoint", "webhook endpoint", "/v1/webhook_endpoints"),
    "events": ("event", "event", "/v1/events"),
}


class Ids:
    """Stripe-looking ids from one seeded generator, so a seeded double is reproducible."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)

    def token(self, n: int) -> str:
        """Random alphanumerics, the alphabet of Stripe ids."""
        return "".join(self._rng.choices(ALPHANUM, k=n))

    def hex_upper(self, n: int) -> str:
        """n uppercase hex digits (invoice prefixes look like this)."""
        return "".join(self._rng.choices("0123456789ABCDEF", k=n))

    def account(self) -> str:
        return "acct_1" + self.token(15)

    def customer(self) -> str:
        return "cus_" + self.token(14)

    def webhook_endpoint(self) -> str:
        return "we_1" + self.token(23)

    def webhook_secret(self) -> str:
        return "whsec_" + self.token(32)

    def event(self) -> str:
        return "evt_1" + self.token(23)

    def request(self) -> str:
        return "req_" + self.token(14)

    def api_key(self, kind: str, livemode: bool) -> str:
        """A key shaped like today's 107-character keys, e.g. sk_test_51..."""
        return f"{kind}_{'live' if livemode else 'test'}_51" + self.token(97)


def account_object(account_id: str, *, email: str | None, business_name: str | None, country: str,
                   default_currency: str, created: int, extra: dict | None = None) -> dict:
    """The Account object GET /v1/account returns for a standard account viewing itself."""
    empty_requirements = {
        "alternatives": [], "current_deadline": None, "currently_due": [], "disabled_reason": None,
        "errors": [], "eventually_due": [], "past_due": [], "pending_verification": [],
    }
    obj: dict[str, Any] = {
        "id": account_id,
        "object": "account",
        "business_profile": {
            "annual_revenue": None, "estimated_worker_count": None, "mcc": "5734",
            "minority_owned_business_designation": None,
            "name": business_name, "product_description": None, "support_address": None, "support_email": email,
            "support_phone": None, "support_url": None, "url": None,
        },
        "business_type": "company",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": country,
        "created": created,
        "default_currency": default_currency,
        "details_submitted": True,
        "email": email,
        "external_accounts": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                              "url": f"/v1/accounts/{account_id}/external_accounts"},
        "future_requirements": dict(empty_requirements),
        "metadata": {},
        "payouts_enabled": True,
        "requirements": dict(empty_requirements),
        "settings": {
            "bacs_debit_payments": {"display_name": None, "service_user_number": None},
            "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
            "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
            "card_payments": {"decline_on": {"avs_failure": False, "cvc_failure": False},
                              "statement_descriptor_prefix": None, "statement_descriptor_prefix_kana": None,
                              "statement_descriptor_prefix_kanji": None},
            "dashboard": {"display_name": business_name, "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": "offer"},
            "payments": {"statement_descriptor": (business_name or "").upper()[:22] or None,
                         "statement_descriptor_kana": None, "statement_descriptor_kanji": None},
            "payouts": {"debit_negative_balances": True, "schedule": {"delay_days": 2, "interval": "daily"},
                        "statement_descriptor": None},
            "sepa_debit_payments": {},
        },
        "tos_acceptance": {"date": created, "ip": None, "user_agent": None},
        "type": "standard",
    }
    if extra:
        obj.update(extra)
    return obj


def customer_object(customer_id: str, *, created: int, livemode: bool, invoice_prefix: str,
                    email: str | None = None, name: str | None = None, phone: str | None = None,
                    address: dict | None = None, description: str | None = None,
                    metadata: dict | None = None, extra: dict | None = None) -> dict:
    """A full Customer object with the field set of the shared customer.created fixture."""
    obj: dict[str, Any] = {
        "id": customer_id,
        "object": "customer",
        "address": _address(address) if address is not None else None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": description,
        "discount": None,
        "email": email,
        "invoice_prefix": invoice_prefix,
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                             "rendering_options": None},
        "livemode": livemode,
        "metadata": dict(metadata or {}),
        "name": name,
        "next_invoice_sequence": 1,
        "phone": phone,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    if extra:
        obj.update(extra)
    return obj


def _address(address: dict) -> dict:
    """Stripe always returns all six address keys, null where unset."""
    return {k: address.get(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")}


def webhook_endpoint_object(endpoint_id: str, *, url: str, enabled_events: list[str], created: int,
                            livemode: bool, description: str | None, metadata: dict,
                            api_version: str | None, secret: str) -> dict:
    """The stored endpoint, secret included; responses drop the secret except on create."""
    return {
        "id": endpoint_id,
        "object": "webhook_endpoint",
        "api_version": api_version,
        "application": None,
        "created": created,
        "description": description,
        "enabled_events": list(enabled_events),
        "livemode": livemode,
        "metadata": dict(metadata),
        "secret": secret,
        "status": "enabled",
        "url": url,
    }


class LazyCustomer:
    """A generated customer stored as a few fields, rendered in full only when a page needs it."""

    __slots__ = ("id", "created", "email", "name", "livemode", "invoice_prefix")

    def __init__(self, customer_id: str, created: int, email: str, name: str, livemode: bool,
                 invoice_prefix: str) -> None:
        self.id = customer_id
        self.created = created
        self.email = email
        self.name = name
        self.livemode = livemode
        self.invoice_prefix = invoice_prefix

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-like access for list filters, so filters need not care whether an object is lazy."""
        return getattr(self, key, default) if key in self.__slots__ else self.render().get(key, default)

    def render(self) -> dict:
        """Materialize the full Customer only when a response needs it, keeping 100k customers small."""
        return customer_object(self.id, created=self.created, livemode=self.livemode,
                               invoice_prefix=self.invoice_prefix, email=self.email, name=self.name)


def render(obj: Any) -> dict:
    """Give handlers one dict shape whether an object is stored lazily or not."""
    return obj.render() if isinstance(obj, LazyCustomer) else obj
