"""An in-memory fake of the Stripe API, served over real HTTP so the official SDK can be pointed at it."""

from __future__ import annotations

import copy
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections import namedtuple
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import requests as http
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from . import errors
from .catalog import API_VERSIONS, WEBHOOK_EVENT_TYPES
from .events import DROPPED, RETENTION_SECONDS, EventRecord, envelope, for_version, payload, type_filter
from .errors import StripeError
from .forms import FormError, decode
from .objects import (
    DEFAULT_API_VERSION,
    KINDS,
    Ids,
    LazyCustomer,
    account_object,
    customer_object,
    render,
    webhook_endpoint_object,
)
from .store import Collection
from .versions import check_version, render_in_version

log = logging.getLogger(__name__)


class _LazyCustomerWithMetadata(LazyCustomer):
    """A generated customer that also carries metadata (benchmarks map `metadata.plan`)."""

    __slots__ = ("metadata",)

    def __init__(self, *args: Any, metadata: dict) -> None:
        super().__init__(*args)
        self.metadata = metadata

    def get(self, key: str, default: Any = None) -> Any:
        if key == "metadata":
            return dict(self.metadata)
        return getattr(self, key, default) if key in LazyCustomer.__slots__ else self.render().get(key, default)

    def render(self) -> dict:
        obj = super().render()
        obj["metadata"] = dict(self.metadata)
        return obj


def charge_object(charge_id: str, *, suffix: str, created: int, livemode: bool, customer: str | None,
                  email: str | None, name: str | None, amount: int, currency: str = "usd") -> dict:
    """A succeeded card Charge in the shape of the shared charge.succeeded fixture (2026-07-29.dahlia):
    paid by `customer`, its billing_details and receipt carrying `email` and `name`. Its payment intent,
    balance transaction and payment method share the charge's id suffix, as Stripe's related ids do."""
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": "txn_" + suffix,
        "billing_details": {
            "address": {"city": None, "country": "US", "line1": None, "line2": None, "postal_code": "02110",
                        "state": None},
            "email": email,
            "name": name,
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "BENCH",
        "captured": True,
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": livemode,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                    "network_status": "approved_by_network", "reason": None, "risk_level": "normal",
                    "risk_score": 21, "seller_message": "Payment complete.", "type": "authorized"},
        "paid": True,
        "payment_intent": "pi_" + suffix,
        "payment_method": "pm_" + suffix,
        "payment_method_details": {
            "card": {
                "amount_authorized": amount, "authorization_code": "103661", "brand": "visa",
                "checks": {"address_line1_check": None, "address_postal_code_check": "pass", "cvc_check": "pass"},
                "country": "US", "exp_month": 12, "exp_year": 2029, "extended_authorization": {"status": "disabled"},
                "fingerprint": "OSL0WvxAI76XNlK3", "funding": "credit",
                "incremental_authorization": {"status": "unavailable"}, "installments": None, "last4": "4242",
                "mandate": None, "multicapture": {"status": "unavailable"}, "network": "visa",
                "network_token": {"used": False}, "network_transaction_id": "052740634324496",
                "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                "regulated_status": "unregulated", "three_d_secure": None, "transaction_link_id": None,
                "wallet": None,
            },
            "type": "card",
        },
        "receipt_email": email,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{suffix}",
        "refunded": False,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


class _LazyCharge(LazyCustomer):
    """A generated charge stored as a few fields and rendered in full only when a response needs it.

    It subclasses LazyCustomer only for the double's lazy-object hooks (objects.render() and the list
    handler's no-copy path recognise LazyCustomer); `email` and `name` are its billing details."""

    __slots__ = ("customer", "suffix", "amount")

    def __init__(self, charge_id: str, created: int, email: str, name: str, livemode: bool, *, customer: str,
                 suffix: str, amount: int) -> None:
        super().__init__(charge_id, created, email, name, livemode, "")
        self.customer = customer
        self.suffix = suffix
        self.amount = amount

    def get(self, key: str, default: Any = None) -> Any:
        if key in ("id", "created", "livemode", "customer", "amount"):
            return getattr(self, key)
        return self.render().get(key, default)

    def render(self) -> dict:
        return charge_object(self.id, suffix=self.suffix, created=self.created, livemode=self.livemode,
                             customer=self.customer, email=self.email, name=self.name, amount=self.amount)


# `at` is the wall-clock time (time.time()) the request reached the double, before any simulated
# latency; `status` is the HTTP status the double answered (None while the request is in flight).
RequestRecord = namedtuple("RequestRecord", "method path key_prefix params at status", defaults=(None, None))

MAX_WEBHOOK_ENDPOINTS = 16
STORABLE_KINDS = ("customers", "charges", "subscriptions", "invoices", "checkout_sessions")
# Stripe "object" value -> the collection an emitted event's object is upserted into.
OBJECT_KINDS = {KINDS[kind][0]: kind for kind in STORABLE_KINDS}
# Events after which a retrieve finds the object deleted rather than in its last state.
DELETING_EVENTS = {"customer.deleted": "customers", "invoice.deleted": "invoices"}
EVENT_TYPES = WEBHOOK_EVENT_TYPES - {"*"}

# Restricted-key resources and the rak_ permission Stripe names when one is missing.
PERMISSION_NAMES = {
    ("account", "read"): "rak_accounts_kyc_basic_read",
    ("customers", "read"): "rak_customer_read",
    ("customers", "write"): "rak_customer_write",
    ("charges", "read"): "rak_charge_read",
    ("subscriptions", "read"): "rak_subscription_read",
    ("invoices", "read"): "rak_invoice_read",
    ("checkout_sessions", "read"): "rak_checkout_session_read",
    ("webhook_endpoints", "read"): "rak_webhook_read",
    ("webhook_endpoints", "write"): "rak_webhook_write",
    ("events", "read"): "rak_event_read",
}
RESOURCES = {resource for resource, _ in PERMISSION_NAMES}
LEVELS = {"none": 0, "read": 1, "write": 2}

SUBSCRIPTION_STATUSES = {"active", "all", "canceled", "ended", "incomplete", "incomplete_expired", "past_due",
                         "paused", "trialing", "unpaid"}
INVOICE_STATUSES = {"draft", "open", "paid", "uncollectible", "void"}
SESSION_STATUSES = {"complete", "expired", "open"}
TAX_EXEMPT = {"none", "exempt", "reverse"}

# Params each endpoint accepts in Stripe (stripe 16.1.0 params), and the subset the double implements.
LIST_COMMON = {"created", "ending_before", "expand", "limit", "starting_after"}
ROUTE_PARAMS: dict[str, tuple[set, set]] = {
    "account": ({"expand"}, {"expand"}),
    "retrieve": ({"expand"}, {"expand"}),
    "customers.list": (LIST_COMMON | {"email", "test_clock"}, LIST_COMMON | {"email"}),
    "customers.create": (
        {"address", "balance", "business_name", "cash_balance", "description", "email", "expand", "individual_name",
         "invoice_prefix", "invoice_settings", "metadata", "name", "next_invoice_sequence", "payment_method",
         "phone", "preferred_locales", "shipping", "source", "tax", "tax_exempt", "tax_id_data", "test_clock",
         "validate"},
        {"address", "balance", "description", "email", "expand", "invoice_prefix", "metadata", "name", "phone",
         "preferred_locales", "tax_exempt"},
    ),
    "customers.delete": (set(), set()),
    "charges.list": (LIST_COMMON | {"customer", "payment_intent", "transfer_group"},
                     LIST_COMMON | {"customer", "payment_intent"}),
    "subscriptions.list": (
        LIST_COMMON | {"automatic_tax", "collection_method", "current_period_end", "current_period_start",
                       "customer", "customer_account", "plan", "price", "status", "test_clock"},
        LIST_COMMON | {"customer", "status"},
    ),
    "invoices.list": (
        LIST_COMMON | {"collection_method", "customer", "customer_account", "due_date", "status", "subscription"},
        LIST_COMMON | {"customer", "status", "subscription"},
    ),
    "checkout_sessions.list": (
        LIST_COMMON | {"customer", "customer_account", "customer_details", "payment_intent", "payment_link",
                       "status", "subscription"},
        LIST_COMMON | {"customer", "payment_intent", "status", "subscription"},
    ),
    "line_items": ({"ending_before", "expand", "limit", "starting_after"},
                   {"ending_before", "expand", "limit", "starting_after"}),
    "webhook_endpoints.list": ({"ending_before", "expand", "limit", "starting_after"},
                               {"ending_before", "expand", "limit", "starting_after"}),
    "webhook_endpoints.create": ({"api_version", "connect", "description", "enabled_events", "expand", "metadata",
                                  "url"},
                                 {"api_version", "connect", "description", "enabled_events", "expand", "metadata",
                                  "url"}),
    "webhook_endpoints.update": ({"description", "disabled", "enabled_events", "expand", "metadata", "url"},
                                 {"description", "disabled", "enabled_events", "expand", "metadata", "url"}),
    "webhook_endpoints.delete": (set(), set()),
    "events.list": (LIST_COMMON | {"delivery_success", "type", "types"},
                    LIST_COMMON | {"delivery_success", "type", "types"}),
}

# Fields the double can expand into stored objects.
EXPANDABLE = {
    "customers": {},
    "charges": {"customer": "customers"},
    "subscriptions": {"customer": "customers", "latest_invoice": "invoices"},
    "invoices": {"customer": "customers"},
    "checkout_sessions": {"customer": "customers", "invoice": "invoices", "subscription": "subscriptions",
                          "line_items": "line_items"},
    "webhook_endpoints": {},
}
_ID_LIKE = re.compile(r"^[a-z]{2,8}_[A-Za-z0-9_]+$")
_KEY_PREFIX = re.compile(r"^(sk|rk|pk)_(test|live)_")


class _Key:
    """One API key the double recognises."""

    __slots__ = ("key", "account_id", "kind", "livemode", "permissions", "revoked")

    def __init__(self, key: str, account_id: str, kind: str, livemode: bool, permissions: dict | None) -> None:
        self.key = key
        self.account_id = account_id
        self.kind = kind
        self.livemode = livemode
        self.permissions = permissions
        self.revoked = False


class _Account:
    """An account with separate test and live data, as Stripe keeps them."""

    def __init__(self, obj: dict, livemode: bool, api_version: str) -> None:
        self.obj = obj
        self.livemode = livemode
        self.api_version = api_version
        self.collections: dict[tuple[bool, str], Collection] = {}
        self.line_items: dict[str, list[dict]] = {}

    @property
    def id(self) -> str:
        return self.obj["id"]

    def collection(self, livemode: bool, kind: str) -> Collection:
        key = (livemode, kind)
        if key not in self.collections:
            self.collections[key] = Collection()
        return self.collections[key]


# Stripe-Rate-Limited-Reason values Stripe documents on its rate-limits page (docs.stripe.com/rate-limits); the
# double has the two rate limiters (no concurrency or resource-specific ones).
GLOBAL_RATE = "global-rate"
ENDPOINT_RATE = "endpoint-rate"


def _rate_limited(reason: str) -> StripeError:
    """A rate_limit 429 as the limiter `reason` answers it, naming the limit in Stripe-Rate-Limited-Reason."""
    exc = errors.rate_limited()
    exc.headers["Stripe-Rate-Limited-Reason"] = reason
    return exc


class _Bucket:
    """A token bucket: `rate` requests per second with bursts up to `rate`."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self.capacity = max(1.0, float(rate))
        self.tokens = self.capacity
        self.last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _Context:
    """What an authenticated request acts on."""

    __slots__ = ("account", "livemode", "key", "request_id", "api_version")

    def __init__(self, account: _Account, key: _Key, request_id: str, api_version: str) -> None:
        self.account = account
        self.livemode = key.livemode
        self.key = key
        self.request_id = request_id
        self.api_version = api_version


class _Handler(WSGIRequestHandler):
    """Werkzeug's handler plus 'down' simulation and connection tracking so stop() really stops."""

    def setup(self) -> None:
        super().setup()
        self.server.double._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.double._track(self.connection, False)

    def run_wsgi(self) -> None:
        if self.server.double._down and not self.path.startswith("/_double/"):
            # Drop the connection without a response: the SDK sees a connection error, as with an outage.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        super().run_wsgi()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", getattr(self, "command", "?"), getattr(self, "path", "?"), code)

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("stripe double server: " + format, *args)


def _is_local_host(host: str) -> bool:
    """Hosts Stripe refuses as webhook targets because it cannot reach them (0.0.0.0 it accepts)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_unspecified:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


class StripeDouble:
    """A fake Stripe API for tests, benchmarks and demos; state is in memory and guarded by one lock."""

    def __init__(self, *, seed: int | None = None, allow_local_urls: bool = False, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.allow_local_urls = allow_local_urls
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._ids = Ids(seed)
        self._accounts: dict[str, _Account] = {}
        self._keys: dict[str, _Key] = {}
        self._fail_rules: list[dict] = []
        self._bucket: _Bucket | None = None
        self._list_rate: float | None = None
        self._list_buckets: dict[str, _Bucket] = {}  # per list endpoint (route name), created on first use
        self._latency = 0.0
        self._down = False
        self._requests: list[RequestRecord] = []
        self._idempotency: dict[tuple, tuple] = {}
        self._host_map: dict[str, str] = {}
        self._v0_secret = "whsec_" + self._ids.token(32)
        self._connections: set = set()
        self._server = None
        self._thread: threading.Thread | None = None
        self.deliveries: list[dict] = []
        self._dropped = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "StripeDouble":
        """Serve on a background thread; port 0 picks a free port."""
        if self._server is not None:
            return self
        self._server = make_server(self._host, self._port, self._wsgi, threaded=True, request_handler=_Handler)
        self._server.double = self
        server = self._server
        self._thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05),
                                        name="stripe-double", daemon=True)
        self._thread.start()
        log.debug("Stripe double listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and drop kept-alive connections, so clients see the server gone."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> "StripeDouble":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to pass as StripeClient(base_addresses={"api": url})."""
        if self._server is None:
            raise RuntimeError("StripeDouble is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _track(self, conn: Any, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # ------------------------------------------------------------------ seeding

    def add_account(self, email: str | None = None, business_name: str | None = None, livemode: bool = False, *,
                    id: str | None = None, country: str = "US", default_currency: str = "usd",
                    created: int | None = None, api_version: str = DEFAULT_API_VERSION) -> dict:
        """Create an account; `livemode` is the default mode for its keys and seeded objects."""
        with self._lock:
            account_id = id or self._ids.account()
            if account_id in self._accounts:
                raise ValueError(f"account {account_id} already exists")
            obj = account_object(account_id, email=email, business_name=business_name, country=country,
                                 default_currency=default_currency, created=created or int(time.time()))
            self._accounts[account_id] = _Account(obj, bool(livemode), api_version)
            return copy.deepcopy(obj)

    def _account(self, account_id: str) -> _Account:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise KeyError(f"no account {account_id!r} in the Stripe double") from None

    def _mode(self, account: _Account, livemode: bool | None) -> bool:
        return account.livemode if livemode is None else bool(livemode)

    def _add_key(self, account_id: str, kind: str, livemode: bool | None, permissions: dict | None) -> str:
        with self._lock:
            account = self._account(account_id)
            mode = self._mode(account, livemode)
            key = self._ids.api_key(kind, mode)
            self._keys[key] = _Key(key, account.id, kind, mode, permissions)
            return key

    def add_secret_key(self, account_id: str, livemode: bool | None = None) -> str:
        """Issue a full-access key (sk_test_/sk_live_ by mode), the kind our app is normally given."""
        return self._add_key(account_id, "sk", livemode, None)

    def add_restricted_key(self, account_id: str, permissions: dict[str, str], livemode: bool | None = None) -> str:
        """Issue an rk_ key; permissions maps resource -> "none"|"read"|"write" (write implies read)."""
        clean = {}
        for resource, level in permissions.items():
            if resource not in RESOURCES:
                raise ValueError(f"unknown restricted-key resource {resource!r}; known: {sorted(RESOURCES)}")
            if level not in LEVELS:
                raise ValueError(f"permission level must be one of {sorted(LEVELS)}, not {level!r}")
            clean[resource] = level
        return self._add_key(account_id, "rk", livemode, clean)

    def add_publishable_key(self, account_id: str, livemode: bool | None = None) -> str:
        """Issue a pk_ key, which Stripe refuses on every secret-key endpoint."""
        return self._add_key(account_id, "pk", livemode, None)

    def revoke_key(self, key: str) -> None:
        """Expire a key as rolling it in the Dashboard does."""
        with self._lock:
            self._keys[key].revoked = True

    def add_customer(self, account_id: str, *, id: str | None = None, email: str | None = None,
                     name: str | None = None, phone: str | None = None, address: dict | None = None,
                     description: str | None = None, metadata: dict | None = None, created: int | None = None,
                     livemode: bool | None = None, **fields: Any) -> dict:
        """Store one full Customer object; extra keyword fields override defaults (e.g. invoice_settings)."""
        with self._lock:
            account = self._account(account_id)
            mode = self._mode(account, livemode)
            obj = customer_object(id or self._ids.customer(), created=int(created or time.time()), livemode=mode,
                                  invoice_prefix=self._ids.hex_upper(8), email=email, name=name, phone=phone,
                                  address=address, description=description, metadata=metadata, extra=fields)
            account.collection(mode, "customers").put(obj["id"], obj["created"], obj)
            return copy.deepcopy(obj)

    def generate_customers(self, account_id: str, n: int, start_created: int | None = None,
                           livemode: bool | None = None, *, id_prefix: str | None = None,
                           metadata: dict | None = None) -> int:
        """Bulk-add n customers (customer{i}@example.test, "Customer {i}", created start_created + i)
        cheaply in memory; i counts on from the customers already in that mode.

        id_prefix: ids become f"{id_prefix}{i:06d}" (predictable, so events can name them) instead of
        random cus_ ids. metadata: stored on each customer, each value formatted with `i`
        (e.g. {"plan": "plan-{i}"})."""
        with self._lock:
            account = self._account(account_id)
            mode = self._mode(account, livemode)
            coll = account.collection(mode, "customers")
            base = int(start_created if start_created is not None else time.time() - n)
            offset = len(coll)
            token, prefix = self._ids.token, self._ids.hex_upper
            meta = {str(k): str(v) for k, v in (metadata or {}).items()}
            records = []
            for i in range(offset, offset + n):
                cid = f"{id_prefix}{i:06d}" if id_prefix else "cus_" + token(14)
                created = base + (i - offset)
                args = (cid, created, f"customer{i}@example.test", f"Customer {i}", mode, prefix(8))
                if meta:
                    obj = _LazyCustomerWithMetadata(*args, metadata={k: v.format(i=i) for k, v in meta.items()})
                else:
                    obj = LazyCustomer(*args)
                records.append((cid, created, obj))
            coll.bulk_put(records)
            return n

    def generate_charges(self, account_id: str, n: int, start_created: int | None = None,
                         livemode: bool | None = None, *, amount: int = 2900) -> int:
        """Bulk-add n succeeded card charges, each paid by a customer of its own generated with it, cheaply
        in memory (both are rendered only when a response needs them, so 100k of each stay small).

        Customer j is generated as generate_customers names it (customer{j}@example.test, "Customer {j}",
        j counting on from the customers already in that mode); its charge carries the same email and
        name in billing_details and receipt_email, `customer` naming it (expandable, as
        `expand[]=data.customer` on GET /v1/charges asks). Customer and charge are created at
        start_created + k for the k-th of the n, so lists by `created` find them in order."""
        with self._lock:
            account = self._account(account_id)
            mode = self._mode(account, livemode)
            customers = account.collection(mode, "customers")
            charges = account.collection(mode, "charges")
            base = int(start_created if start_created is not None else time.time() - n)
            first = len(customers)
            token, prefix = self._ids.token, self._ids.hex_upper
            customer_records, charge_records = [], []
            for k in range(n):
                j = first + k
                created = base + k
                email, name = f"customer{j}@example.test", f"Customer {j}"
                cid = "cus_" + token(14)
                customer_records.append((cid, created, LazyCustomer(cid, created, email, name, mode, prefix(8))))
                suffix = "3" + token(23)
                charge_id = "ch_" + suffix
                charge_records.append((charge_id, created, _LazyCharge(
                    charge_id, created, email, name, mode, customer=cid, suffix=suffix, amount=amount)))
            customers.bulk_put(customer_records)
            charges.bulk_put(charge_records)
            return n

    def delete_customer(self, account_id: str, customer_id: str, livemode: bool | None = None) -> None:
        """Delete a customer as DELETE /v1/customers/{id} would."""
        with self._lock:
            account = self._account(account_id)
            if not account.collection(self._mode(account, livemode), "customers").delete(customer_id):
                raise KeyError(customer_id)

    def add_object(self, account_id: str, kind: str, obj: dict, *, line_items: list[dict] | None = None) -> dict:
        """Store (or replace) a full object; `obj` may be an Event, whose data.object is stored."""
        if kind not in STORABLE_KINDS:
            raise ValueError(f"kind must be one of {STORABLE_KINDS}, not {kind!r}")
        obj = copy.deepcopy(obj)
        if obj.get("object") == "event":
            obj = obj["data"]["object"]
        expected = KINDS[kind][0]
        if obj.get("object") != expected:
            raise ValueError(f"{kind} objects must have object={expected!r}, got {obj.get('object')!r}")
        if not obj.get("id"):
            raise ValueError("object has no id (an upcoming invoice is a preview and cannot be stored)")
        if not isinstance(obj.get("created"), int):
            raise ValueError("object needs an integer 'created'")
        with self._lock:
            account = self._account(account_id)
            mode = bool(obj.get("livemode", account.livemode))
            account.collection(mode, kind).put(obj["id"], obj["created"], obj)
            if line_items is not None:
                if kind != "checkout_sessions":
                    raise ValueError("line_items only apply to checkout_sessions")
                account.line_items[obj["id"]] = copy.deepcopy(line_items)
            return copy.deepcopy(obj)

    def get_object(self, account_id: str, kind: str, object_id: str, livemode: bool | None = None) -> dict | None:
        """Read back a stored object, so tests can assert on state without going through HTTP."""
        with self._lock:
            account = self._account(account_id)
            coll = account.collection(self._mode(account, livemode), kind)
            obj = coll.items.get(object_id)
            return copy.deepcopy(render(obj)) if obj is not None else None

    def endpoints(self, account_id: str, livemode: bool | None = None) -> list[dict]:
        """Webhook endpoints of the account (newest first), secrets included; livemode=None means both modes."""
        with self._lock:
            account = self._account(account_id)
            modes = [False, True] if livemode is None else [bool(livemode)]
            out = []
            for mode in modes:
                out.extend(copy.deepcopy(ep) for ep in account.collection(mode, "webhook_endpoints").newest_first())
            return out

    # ------------------------------------------------------------------ fault injection

    def fail_next(self, n: int, status: int = 429, path_prefix: str | None = None, code: str | None = None) -> None:
        """Make the next n API requests (matching path_prefix) fail as Stripe does, to test error and retry paths."""
        # 429 defaults to a real rate limit (code "rate_limit"; the SDK does not retry it); code="lock_timeout"
        # adds Stripe-Should-Retry: true, which the SDK retries; 5xx is an api_error the SDK retries.
        if status == 429:
            code = code or "rate_limit"
            if code not in ("rate_limit", "lock_timeout"):
                raise ValueError("429 code must be 'rate_limit' or 'lock_timeout'")
        elif not 500 <= status <= 599:
            raise ValueError("status must be 429 or 5xx")
        with self._lock:
            self._fail_rules.append({"remaining": int(n), "status": status, "prefix": path_prefix, "code": code})

    def set_rate_limit(self, per_second: float | None, list_per_second: float | None = None) -> None:
        """Enforce token buckets, to test throttling behaviour: `per_second` over all API requests (Stripe's
        global limit: 100/s live, 25/s sandbox) and `list_per_second` over each list endpoint on its own
        (GET /v1/customers, GET /v1/charges, ...; Stripe: 25/s per endpoint). A list call spends a token of
        both. None (or 0) turns a limit off; each call sets both limits and refills the buckets. A 429 from
        either carries Stripe-Rate-Limited-Reason: global-rate or endpoint-rate."""
        with self._lock:
            self._bucket = _Bucket(per_second) if per_second else None
            self._list_rate = float(list_per_second) if list_per_second else None
            self._list_buckets = {}

    def _list_endpoint(self, method: str, path: str) -> str | None:
        """The route name of the list endpoint a request hits (e.g. "customers.list"), else None."""
        if method != "GET":
            return None
        for route in ROUTES:
            if route[0] == method and route[1].fullmatch(path):
                name = route[4]
                return name if name.endswith(".list") or name == "line_items" else None
        return None

    def _check_rate_limits(self, method: str, path: str) -> None:
        """Spend the request's tokens (under the lock); raise the 429 of the first limit it exceeds."""
        if self._bucket is not None and not self._bucket.take():
            raise _rate_limited(GLOBAL_RATE)
        if self._list_rate is not None:
            endpoint = self._list_endpoint(method, path)
            if endpoint is not None:
                bucket = self._list_buckets.get(endpoint)
                if bucket is None:
                    bucket = self._list_buckets[endpoint] = _Bucket(self._list_rate)
                if not bucket.take():
                    raise _rate_limited(ENDPOINT_RATE)

    def set_latency(self, seconds: float) -> None:
        """Delay every API response, to exercise timeouts and slow-path UI."""
        self._latency = max(0.0, float(seconds))

    def set_down(self, down: bool = True) -> None:
        """While down, API connections are dropped without a response (the SDK raises APIConnectionError)."""
        self._down = bool(down)

    def map_webhook_host(self, host: str, base_url: str) -> None:
        """Deliver webhooks for a public-looking host (as registered with Stripe) to a local base URL instead."""
        with self._lock:
            self._host_map[host.lower()] = base_url.rstrip("/")

    @property
    def requests(self) -> list[RequestRecord]:
        """Every API request seen: (method, path, key prefix such as 'sk_test_', decoded params, `at` the
        time.time() it reached the double before any simulated latency, `status` the HTTP status answered)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _matching(self, path_prefix: str | None) -> list[RequestRecord]:
        with self._lock:
            records = list(self._requests)
        if path_prefix:
            records = [r for r in records if r.path.startswith(path_prefix)]
        return records

    def max_per_second(self, path_prefix: str | None = None, window: float = 1.0) -> int:
        """The most API requests (whose path starts with path_prefix, if given) that reached the double
        within any sliding window of `window` seconds, by their arrival time `at` (before the simulated
        latency). Windows are half-open, [t, t + window); answered-429 requests count too."""
        if window <= 0:
            raise ValueError("window must be positive")
        times = sorted(r.at for r in self._matching(path_prefix) if r.at is not None)
        best = start = 0
        for end, t in enumerate(times):
            while t - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def stats(self, path_prefix: str | None = None, window: float = 1.0) -> dict:
        """{"requests", "max_per_second", "rate_limited"} over API requests whose path starts with
        path_prefix (all when None); rate_limited counts the 429s the double answered (its rate limit
        and injected 429s alike)."""
        records = self._matching(path_prefix)
        return {"requests": len(records), "max_per_second": self.max_per_second(path_prefix, window),
                "rate_limited": sum(1 for r in records if r.status == 429)}

    # ------------------------------------------------------------------ webhooks out

    def sign(self, payload: bytes, secret: str, timestamp: int | None = None, livemode: bool = False) -> str:
        """Build the Stripe-Signature header for exactly these bytes (test mode adds Stripe's dummy v0)."""
        t = int(time.time() if timestamp is None else timestamp)
        signed = f"{t}.".encode() + payload
        header = f"t={t},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"
        if not livemode:
            header += f",v0={hmac.new(self._v0_secret.encode(), signed, hashlib.sha256).hexdigest()}"
        return header

    def deliver(self, account_id: str, event_bytes: bytes | str, endpoint_id: str | None = None,
                timeout: float = 10.0) -> list[tuple[str, int | None]]:
        """Act as Stripe delivering a webhook, so receivers are tested against real signatures and bytes."""
        # Returns [(endpoint_id, HTTP status or None if the connection failed)]; redirects are not followed.
        payload_bytes = event_bytes.encode("utf-8") if isinstance(event_bytes, str) else bytes(event_bytes)
        event = json.loads(payload_bytes)
        event_type = event["type"]
        livemode = bool(event.get("livemode", False))
        with self._lock:
            targets = self._targets(self._account(account_id), livemode, event_type, endpoint_id)
        if endpoint_id is not None and not targets:
            self._warn_no_target(endpoint_id, livemode, event_type)
        return [(ep["id"], self._post(ep, payload_bytes, event.get("id"), event_type, livemode, timeout))
                for ep in targets]

    def _targets(self, account: _Account, livemode: bool, event_type: str,
                 endpoint_id: str | None = None) -> list[dict]:
        """Snapshots of the enabled endpoints of that mode subscribed to event_type (or just endpoint_id)."""
        targets = []
        for ep in account.collection(livemode, "webhook_endpoints").newest_first():
            if endpoint_id is not None and ep["id"] != endpoint_id:
                continue
            if ep["status"] != "enabled":
                continue
            if "*" not in ep["enabled_events"] and event_type not in ep["enabled_events"]:
                continue
            targets.append({k: ep[k] for k in ("id", "url", "secret", "api_version")})
        return targets

    def _warn_no_target(self, endpoint_id: str, livemode: bool, event_type: str) -> None:
        """A delivery aimed at one endpoint that reaches none is almost always a test mistake; say so."""
        log.warning("Stripe double: endpoint %s is not an enabled %s endpoint subscribed to %s",
                    endpoint_id, "live" if livemode else "test", event_type)

    def _post(self, ep: dict, payload_bytes: bytes, event_id: str | None, event_type: str, livemode: bool,
              timeout: float) -> int | None:
        """POST one signed payload to one endpoint and log it in `deliveries`; None when the connection failed."""
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Accept": "*/*; q=0.5, application/xml",
            "Cache-Control": "no-cache",
            "Stripe-Signature": self.sign(payload_bytes, ep["secret"], livemode=livemode),
        }
        target = self._delivery_url(ep["url"])
        status: int | None
        error = None
        try:
            resp = http.post(target, data=payload_bytes, headers=headers, timeout=timeout, allow_redirects=False)
            status = resp.status_code
        except http.RequestException as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        log.debug("Stripe double delivered %s to %s (%s): %s", event_type, ep["id"], target, status or error)
        self._log_delivery(ep["id"], target, event_id, event_type, status, error)
        return status

    def _log_delivery(self, endpoint_id: str, url: str, event_id: str | None, event_type: str,
                      status: int | None, error: str | None) -> None:
        """Keep every attempt (dropped ones too) so tests can count what reached, or missed, each endpoint."""
        with self._lock:
            self.deliveries.append({"endpoint_id": endpoint_id, "url": url, "event_id": event_id,
                                    "type": event_type, "status": status, "error": error})

    def _delivery_url(self, url: str) -> str:
        parts = urlsplit(url)
        with self._lock:
            base = self._host_map.get((parts.hostname or "").lower())
        if not base:
            return url
        b = urlsplit(base)
        return urlunsplit((b.scheme, b.netloc, b.path + parts.path, parts.query, ""))

    # ------------------------------------------------------------------ events, outages, endpoint changes

    def emit(self, account_id: str, event_type: str, obj: dict, *, livemode: bool | None = None,
             created: int | None = None, api_version: str | None = None, previous_attributes: dict | None = None,
             deliver: bool = True, event_id: str | None = None) -> dict:
        """Create an event as Stripe does when `obj` changes: the object is upserted (so the API serves its new
        state), the event recorded for GET /v1/events and sent to each subscribed endpoint in its api_version.

        The event is rendered in `api_version`, else the account's default version, as Stripe renders an event
        in the version that was the account default when it was created. Returns the event as recorded."""
        opts = {"livemode": livemode, "created": created, "api_version": api_version,
                "previous_attributes": copy.deepcopy(previous_attributes), "event_id": event_id}
        (record,) = self._emit(account_id, [(event_type, copy.deepcopy(obj), opts)], deliver)
        with self._lock:
            return copy.deepcopy(record.event)

    def emit_many(self, account_id: str, items: list, *, deliver: bool = True) -> list[str]:
        """Emit many events at benchmark speed, returning their ids in order; each item is
        (event_type, obj[, kwargs]) or {"type", "object", **kwargs} with emit()'s keyword arguments.

        Objects are stored without a deep copy: pass a fresh dict per item and do not change nested
        values afterwards (top-level keys are copied)."""
        return [record.event["id"] for record in self._emit(account_id, items, deliver)]

    def _emit(self, account_id: str, items: list, deliver: bool) -> list[EventRecord]:
        """Build every event first (so a bad item stores nothing), store them, then deliver outside the lock."""
        with self._lock:
            account = self._account(account_id)
            targets_by_key: dict[tuple[bool, str], list[dict]] = {}
            built = []
            for item in items:
                event_type, obj, opts = _event_item(item)
                obj = dict(obj)
                mode = bool(obj.get("livemode", account.livemode) if opts.get("livemode") is None
                            else opts["livemode"])
                key = (mode, event_type)
                if key not in targets_by_key:
                    targets_by_key[key] = self._targets(account, mode, event_type)
                record = self._new_event(account, event_type, obj, mode, targets_by_key[key], opts)
                built.append((record, mode, targets_by_key[key]))
            self._store_events(account, [(record, mode) for record, mode, _ in built])
        if deliver:
            for record, mode, targets in built:
                if targets:
                    self._dispatch(record, targets, mode)
        return [record for record, _, _ in built]

    def _new_event(self, account: _Account, event_type: str, obj: dict, mode: bool, targets: list[dict],
                   opts: dict) -> EventRecord:
        """One event envelope around `obj` rendered in the event's version, pending for every target."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown Stripe event type {event_type!r}")
        version = check_version(opts.get("api_version") or account.api_version)
        created = int(time.time()) if opts.get("created") is None else int(opts["created"])
        event = envelope(opts.get("event_id") or self._ids.event(), event_type, render_in_version(obj, version),
                         api_version=version, created=created, livemode=mode, pending_webhooks=len(targets),
                         previous_attributes=opts.get("previous_attributes"))
        return EventRecord(event, obj, {ep["id"] for ep in targets})

    def _store_events(self, account: _Account, built: list[tuple[EventRecord, bool]]) -> None:
        """Record the events and upsert their objects; the last event about an object leaves its state."""
        events: dict[bool, dict[str, EventRecord]] = {}
        objects: dict[tuple[bool, str], dict[str, EventRecord]] = {}
        for record, mode in built:
            event_id = record.event["id"]
            if event_id in events.setdefault(mode, {}) or event_id in account.collection(mode, "events"):
                raise ValueError(f"event {event_id} is already recorded")
            events[mode][event_id] = record
            kind = OBJECT_KINDS.get(record.source.get("object"))
            if kind is not None and record.source.get("id"):
                objects.setdefault((mode, kind), {})[record.source["id"]] = record
        for mode, by_id in events.items():
            account.collection(mode, "events").bulk_put([(i, r.event["created"], r) for i, r in by_id.items()])
        for (mode, kind), by_id in objects.items():
            self._upsert(account.collection(mode, kind), kind, by_id)

    def _upsert(self, coll: Collection, kind: str, by_id: dict[str, EventRecord]) -> None:
        """Store each object's latest state, or mark it deleted after customer.deleted / invoice.deleted."""
        puts = []
        for object_id, record in by_id.items():
            if DELETING_EVENTS.get(record.event["type"]) == kind:
                if not coll.delete(object_id):
                    coll.deleted.add(object_id)
                continue
            created = record.source.get("created")
            if not isinstance(created, int):
                created = coll.created.get(object_id, record.event["created"])
            puts.append((object_id, created, record.source))
        coll.bulk_put(puts)

    def _dispatch(self, record: EventRecord, targets: list[dict], livemode: bool,
                  timeout: float = 10.0) -> list[tuple[str, int | None]]:
        """Send a recorded event to each target in the target's api_version, or log it dropped in an outage."""
        with self._lock:
            event_id, event_type = record.event["id"], record.event["type"]
            if self._dropped:
                for ep in targets:
                    self._log_delivery(ep["id"], self._delivery_url(ep["url"]), event_id, event_type, None, DROPPED)
                return [(ep["id"], None) for ep in targets]
            bodies: dict[str, bytes] = {}
            for ep in targets:
                version = ep["api_version"] or record.event["api_version"]
                if version not in bodies:
                    bodies[version] = payload(for_version(record, version))
        results = []
        for ep in targets:
            body = bodies[ep["api_version"] or record.event["api_version"]]
            status = self._post(ep, body, event_id, event_type, livemode, timeout)
            if status is not None and 200 <= status < 300:
                with self._lock:
                    record.mark_delivered(ep["id"])
            results.append((ep["id"], status))
        return results

    def drop_deliveries(self, dropped: bool = True) -> None:
        """Simulate a webhook outage: emitted (and resent) events are recorded but reach no endpoint; each
        lost delivery is logged in `deliveries` with status None. deliver() with raw bytes is unaffected."""
        with self._lock:
            self._dropped = bool(dropped)

    def redeliver(self, account_id: str, event_id: str, endpoint_id: str | None = None,
                  timeout: float = 10.0) -> list[tuple[str, int | None]]:
        """Send a recorded event again, as the Dashboard's Resend does; returns like deliver()."""
        with self._lock:
            account = self._account(account_id)
            record, mode = self._find_event(account, event_id)
            targets = self._targets(account, mode, record.event["type"], endpoint_id)
        if endpoint_id is not None and not targets:
            self._warn_no_target(endpoint_id, mode, record.event["type"])
        return self._dispatch(record, targets, mode, timeout)

    def _find_event(self, account: _Account, event_id: str) -> tuple[EventRecord, bool]:
        """The recorded event and its mode, so a resend needs no livemode from the caller."""
        for mode in (False, True):
            record = account.collection(mode, "events").items.get(event_id)
            if record is not None:
                return record, mode
        raise KeyError(f"no event {event_id!r} recorded for account {account.id}")

    def events(self, account_id: str, livemode: bool | None = None) -> list[dict]:
        """Every recorded event (both modes unless livemode says), newest first, older than 30 days included."""
        with self._lock:
            account = self._account(account_id)
            modes = [False, True] if livemode is None else [bool(livemode)]
            records = [r for mode in modes for r in account.collection(mode, "events").items.values()]
            records.sort(key=lambda r: (r.event["created"], r.event["id"]), reverse=True)
            return [copy.deepcopy(r.event) for r in records]

    def _endpoint_coll(self, account_id: str, endpoint_id: str) -> Collection:
        """The collection (test or live) holding the endpoint."""
        account = self._account(account_id)
        for mode in (False, True):
            coll = account.collection(mode, "webhook_endpoints")
            if endpoint_id in coll:
                return coll
        raise KeyError(f"no webhook endpoint {endpoint_id!r} on account {account_id}")

    def disable_endpoint(self, account_id: str, endpoint_id: str) -> dict:
        """Disable an endpoint as Stripe does after days of failed deliveries; it then receives nothing."""
        with self._lock:
            endpoint = self._endpoint_coll(account_id, endpoint_id).items[endpoint_id]
            endpoint["status"] = "disabled"
            return copy.deepcopy(endpoint)

    def delete_endpoint(self, account_id: str, endpoint_id: str) -> None:
        """Remove an endpoint as a colleague deleting it in the Dashboard does."""
        with self._lock:
            coll = self._endpoint_coll(account_id, endpoint_id)
            coll.delete(endpoint_id)
            coll.deleted.discard(endpoint_id)

    # ------------------------------------------------------------------ WSGI

    def _wsgi(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        if request.path.startswith("/_double/") or request.path == "/_double":
            response = self._control(request)
        else:
            response = self._api(request)
        return response(environ, start_response)

    def _json_response(self, status: int, body: Any, headers: dict | None = None) -> Response:
        data = json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8")
        resp = Response(data, status=status, content_type="application/json")
        for k, v in (headers or {}).items():
            resp.headers[k] = v
        return resp

    def _api(self, request: Request) -> Response:
        arrived = time.time()
        record: list[RequestRecord] = []  # the record this request appended, to stamp its status on
        response = self._api_response(request, arrived, record)
        if record:
            with self._lock:
                # The list may have been cleared meanwhile; only stamp our own record where it still is.
                for i in range(len(self._requests) - 1, -1, -1):
                    if self._requests[i] is record[0]:
                        self._requests[i] = record[0]._replace(status=response.status_code)
                        break
        return response

    def _api_response(self, request: Request, arrived: float, record: list) -> Response:
        with self._lock:
            request_id = self._ids.request()
        if self._latency:
            time.sleep(self._latency)
        headers = {"Request-Id": request_id, "Cache-Control": "no-cache, no-store"}
        method = request.method.upper()
        ctx: _Context | None = None
        idem = None
        try:
            raw_key = self._credentials(request)
            key_prefix = None
            if raw_key is not None:
                m = _KEY_PREFIX.match(raw_key)
                key_prefix = m.group(0) if m else "(unrecognised)"
            try:
                params = decode(request.query_string) if method in ("GET", "DELETE") else decode(request.get_data())
                if method == "DELETE" and not params:
                    params = decode(request.get_data())
            except FormError as exc:
                with self._lock:
                    record.append(RequestRecord(method, request.path, key_prefix, {}, arrived))
                    self._requests.append(record[0])
                raise StripeError(400, str(exc), param=exc.param) from None
            with self._lock:
                record.append(RequestRecord(method, request.path, key_prefix, params, arrived))
                self._requests.append(record[0])
                self._injected_failure(request.path)
                self._check_rate_limits(method, request.path)
                ctx = self._authenticate(request, raw_key, request_id)
            headers["Stripe-Version"] = ctx.api_version
            route, match_args = self._route(method, request.path)
            resource, level, route_name = route[2], route[3], route[4]
            self._check_permission(ctx, resource, level)
            self._check_params(route_name, params)
            if method in ("POST", "DELETE"):
                idem = request.headers.get("Idempotency-Key")
                if idem:
                    headers["Idempotency-Key"] = idem
                    replay = self._idempotent_replay(ctx, idem, method, request.path, params)
                    if replay is not None:
                        status, body, original = replay
                        headers["Idempotent-Replayed"] = "true"
                        headers["Original-Request"] = original
                        return self._json_response(status, body, headers)
                    headers["Original-Request"] = request_id
            with self._lock:
                status, body = route[5](self, ctx, params, **match_args)
                if idem:
                    self._idempotency[(ctx.account.id, ctx.livemode, idem)] = (
                        (method, request.path, json.dumps(params, sort_keys=True)), status, body, request_id)
            return self._json_response(status, body, headers)
        except StripeError as exc:
            log_url = None
            if ctx is not None:
                mode = "" if ctx.livemode else "test/"
                log_url = f"https://dashboard.stripe.com/{mode}logs/{request_id}?t={int(time.time())}"
            headers.update(exc.headers)
            return self._json_response(exc.status, exc.body(log_url), headers)

    def _credentials(self, request: Request) -> str | None:
        """The API key from Bearer or Basic auth (Stripe accepts both)."""
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return value
        if scheme.lower() == "basic" and request.authorization is not None:
            return request.authorization.username or ""
        return value or header

    def _injected_failure(self, path: str) -> None:
        for rule in self._fail_rules:
            if rule["remaining"] > 0 and (rule["prefix"] is None or path.startswith(rule["prefix"])):
                rule["remaining"] -= 1
                self._fail_rules = [r for r in self._fail_rules if r["remaining"] > 0]
                if rule["status"] == 429:
                    raise errors.lock_timeout() if rule["code"] == "lock_timeout" else errors.rate_limited()
                raise errors.api_error(rule["status"])

    def _authenticate(self, request: Request, raw_key: str | None, request_id: str) -> _Context:
        if raw_key is None or raw_key == "":
            raise errors.missing_key()
        key = self._keys.get(raw_key)
        if key is None:
            raise errors.invalid_key(raw_key)
        if key.revoked:
            raise errors.expired_key(raw_key)
        if key.kind == "pk":
            raise errors.publishable_key()
        account = self._accounts[key.account_id]
        stripe_account = request.headers.get("Stripe-Account")
        if stripe_account and stripe_account != account.id:
            raise errors.no_account_access(raw_key, stripe_account)
        version = request.headers.get("Stripe-Version")
        if version and version not in API_VERSIONS:
            raise StripeError(400, f"Invalid Stripe API version: {version}")
        return _Context(account, key, request_id, version or account.api_version)

    def _route(self, method: str, path: str) -> tuple[tuple, dict]:
        for route in ROUTES:
            if route[0] != method:
                continue
            m = route[1].fullmatch(path)
            if m:
                return route, m.groupdict()
        log.warning("Stripe double has no route for %s %s", method, path)
        raise errors.unrecognized_url(method, path)

    def _check_permission(self, ctx: _Context, resource: str, level: str) -> None:
        if ctx.key.kind != "rk":
            return
        granted = ctx.key.permissions.get(resource, "none")
        if LEVELS[granted] < LEVELS[level]:
            raise errors.missing_permission(ctx.key.key, ctx.account.id, PERMISSION_NAMES[(resource, level)])

    def _check_params(self, route_name: str, params: dict) -> None:
        allowed, implemented = ROUTE_PARAMS[route_name]
        for name in params:
            if name not in allowed:
                raise errors.unknown_parameter(name)
            if name not in implemented:
                raise errors.unsupported(f"the parameter '{name}'", param=name)

    def _idempotent_replay(self, ctx: _Context, idem: str, method: str, path: str, params: dict):
        with self._lock:
            saved = self._idempotency.get((ctx.account.id, ctx.livemode, idem))
        if saved is None:
            return None
        fingerprint, status, body, original = saved
        if fingerprint != (method, path, json.dumps(params, sort_keys=True)):
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they were first used "
                f"with. Try using a key other than '{idem}' if you meant to execute a different request.",
                type="idempotency_error",
            )
        return status, body, original

    # ------------------------------------------------------------------ API handlers (called under the lock)

    def _coll(self, ctx: _Context, kind: str) -> Collection:
        return ctx.account.collection(ctx.livemode, kind)

    def _missing(self, ctx: _Context, kind: str, object_id: str, param: str = "id") -> StripeError:
        other = ctx.account.collections.get((not ctx.livemode, kind))
        other_mode = (not ctx.livemode) if other is not None and object_id in other else None
        return errors.resource_missing(KINDS[kind][1], object_id, param=param, other_mode=other_mode)

    def h_account(self, ctx: _Context, params: dict) -> tuple[int, dict]:
        obj = copy.deepcopy(ctx.account.obj)
        self._expand(ctx, "account", obj, self._expand_paths(params), in_list=False)
        return 200, obj

    def h_retrieve(self, ctx: _Context, params: dict, kind: str, id: str) -> tuple[int, dict]:
        if id == "search" and kind in ("customers", "charges", "subscriptions", "invoices"):
            raise errors.unsupported(f"GET {KINDS[kind][2]}/search (the Search API)")
        coll = self._coll(ctx, kind)
        obj = coll.items.get(id)
        if obj is None:
            if kind == "customers" and id in coll.deleted:
                return 200, {"id": id, "object": "customer", "deleted": True}
            raise self._missing(ctx, kind, id)
        out = copy.deepcopy(self._public(kind, render(obj)))
        self._expand(ctx, kind, out, self._expand_paths(params), in_list=False)
        return 200, out

    def h_list(self, ctx: _Context, params: dict, kind: str) -> tuple[int, dict]:
        coll = self._coll(ctx, kind)
        limit = self._limit(params)
        after, before = params.get("starting_after"), params.get("ending_before")
        if after is not None and before is not None:
            raise StripeError(400, "You may only specify one of these parameters: starting_after, ending_before.")
        for name, cursor in (("starting_after", after), ("ending_before", before)):
            if cursor is not None and (not isinstance(cursor, str) or cursor not in coll):
                raise self._missing(ctx, kind, str(cursor), param=name)
        match = self._list_filter(kind, params)
        objs, has_more = coll.page(limit=limit, starting_after=after, ending_before=before,
                                   created_range=self._created_range(params), match=match)
        paths = self._expand_paths(params)
        data = []
        for obj in objs:
            out = self._public(kind, render(obj))
            if not isinstance(obj, LazyCustomer):
                out = copy.deepcopy(out)
            self._expand(ctx, kind, out, paths, in_list=True)
            data.append(out)
        return 200, {"object": "list", "data": data, "has_more": has_more, "url": KINDS[kind][2]}

    def _public(self, kind: str, obj: dict) -> dict:
        """Hide what Stripe only shows once (the endpoint secret)."""
        if kind == "webhook_endpoints":
            obj = dict(obj)
            obj.pop("secret", None)
        return obj

    def _limit(self, params: dict) -> int:
        raw = params.get("limit")
        if raw is None:
            return 10
        if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
            raise errors.invalid_integer("limit", str(raw))
        value = int(raw)
        if value < 1:
            raise StripeError(400, "This value must be greater than or equal to 1.",
                              code="parameter_invalid_integer", param="limit")
        if value > 100:
            raise StripeError(400, f"This value must be less than or equal to 100 (it currently is '{value}').",
                              code="parameter_invalid_integer", param="limit")
        return value

    def _created_range(self, params: dict) -> tuple[int | None, int | None]:
        raw = params.get("created")
        if raw is None:
            return None, None

        def as_int(name: str, value: Any) -> int:
            if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
                raise errors.invalid_integer(name, str(value))
            return int(value)

        if isinstance(raw, str):
            v = as_int("created", raw)
            return v, v
        if not isinstance(raw, dict):
            raise errors.invalid_integer("created", str(raw))
        lo = hi = None
        for op, value in raw.items():
            v = as_int(f"created[{op}]", value)
            if op == "gt":
                lo = v + 1 if lo is None else max(lo, v + 1)
            elif op == "gte":
                lo = v if lo is None else max(lo, v)
            elif op == "lt":
                hi = v - 1 if hi is None else min(hi, v - 1)
            elif op == "lte":
                hi = v if hi is None else min(hi, v)
            else:
                raise errors.unknown_parameter(f"created[{op}]")
        return lo, hi

    def _list_filter(self, kind: str, params: dict) -> Callable[[Any], bool] | None:
        checks: list[Callable[[Any], bool]] = []
        for name in ("customer", "payment_intent", "email"):
            if name in params:
                want = params[name]
                checks.append(lambda o, n=name, w=want: o.get(n) == w)
        if "subscription" in params:
            want = params["subscription"]
            if kind == "invoices":
                checks.append(lambda o, w=want: ((o.get("parent") or {}).get("subscription_details") or {})
                              .get("subscription") == w)
            else:
                checks.append(lambda o, w=want: o.get("subscription") == w)
        status = params.get("status")
        if kind == "subscriptions":
            if status is None:
                checks.append(lambda o: o.get("status") != "canceled")
            elif status not in SUBSCRIPTION_STATUSES:
                raise errors.invalid_enum("status", SUBSCRIPTION_STATUSES)
            elif status == "ended":
                checks.append(lambda o: o.get("status") in ("canceled", "incomplete_expired"))
            elif status != "all":
                checks.append(lambda o, s=status: o.get("status") == s)
        elif status is not None:
            allowed = INVOICE_STATUSES if kind == "invoices" else SESSION_STATUSES
            if status not in allowed:
                raise errors.invalid_enum("status", allowed)
            checks.append(lambda o, s=status: o.get("status") == s)
        if not checks:
            return None
        return lambda o: all(c(o) for c in checks)

    def _expand_paths(self, params: dict) -> list[str]:
        raw = params.get("expand")
        if raw is None:
            return []
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
            raise StripeError(400, "Invalid array", param="expand")
        return raw

    def _expand(self, ctx: _Context, kind: str, obj: dict, paths: list[str], *, in_list: bool) -> None:
        for path in paths:
            field = path
            if in_list:
                if not path.startswith("data."):
                    raise StripeError(400, f"This property cannot be expanded ({path}). You may want to try "
                                           f"expanding 'data.{path}' instead.", param="expand")
                field = path[len("data."):]
            if "." in field:
                raise errors.unsupported(f"nested expansion '{path}'", param="expand")
            if field not in obj and field != "line_items":
                raise StripeError(400, f"This property cannot be expanded ({path}).", param="expand")
            target = EXPANDABLE.get(kind, {}).get(field)
            value = obj.get(field)
            if target == "line_items":
                items = ctx.account.line_items.get(obj["id"], [])
                obj["line_items"] = {"object": "list", "data": copy.deepcopy(items[:10]),
                                     "has_more": len(items) > 10,
                                     "url": f"/v1/checkout/sessions/{obj['id']}/line_items"}
                continue
            if value is None or isinstance(value, dict):
                continue
            if target is None:
                if isinstance(value, str) and _ID_LIKE.match(value):
                    raise errors.unsupported(f"expanding '{path}' ({value.split('_')[0]}_ objects are not stored)",
                                             param="expand")
                raise StripeError(400, f"This property cannot be expanded ({path}).", param="expand")
            stored = self._coll(ctx, target).items.get(value)
            if stored is None:
                raise errors.unsupported(f"expanding '{path}' to {value}, which is not stored in the double",
                                         param="expand")
            obj[field] = copy.deepcopy(self._public(target, render(stored)))

    def _oldest_visible(self) -> int:
        """Stripe keeps events 30 days; older ones are neither listed nor retrievable."""
        return int(time.time()) - RETENTION_SECONDS

    def _visible_event(self, ctx: _Context, event_id: Any, param: str = "id") -> EventRecord:
        """The event if this mode has it within retention, else the 404 Stripe answers (naming the other mode)."""
        oldest = self._oldest_visible()
        record = self._coll(ctx, "events").items.get(event_id) if isinstance(event_id, str) else None
        if record is not None and record.event["created"] >= oldest:
            return record
        other = ctx.account.collections.get((not ctx.livemode, "events"))
        twin = other.items.get(event_id) if other is not None and isinstance(event_id, str) else None
        other_mode = (not ctx.livemode) if twin is not None and twin.event["created"] >= oldest else None
        raise errors.resource_missing("event", str(event_id), param=param, other_mode=other_mode)

    def h_events_list(self, ctx: _Context, params: dict) -> tuple[int, dict]:
        limit = self._limit(params)
        after, before = params.get("starting_after"), params.get("ending_before")
        if after is not None and before is not None:
            raise StripeError(400, "You may only specify one of these parameters: starting_after, ending_before.")
        match = type_filter(params)
        lo, hi = self._created_range(params)
        oldest = self._oldest_visible()
        lo = oldest if lo is None else max(lo, oldest)
        for name, cursor in (("starting_after", after), ("ending_before", before)):
            if cursor is not None:
                self._visible_event(ctx, cursor, param=name)
        records, has_more = self._coll(ctx, "events").page(limit=limit, starting_after=after, ending_before=before,
                                                           created_range=(lo, hi), match=match)
        paths = self._expand_paths(params)
        data = []
        for record in records:
            out = copy.deepcopy(record.event)
            self._expand(ctx, "events", out, paths, in_list=True)
            data.append(out)
        return 200, {"object": "list", "data": data, "has_more": has_more, "url": KINDS["events"][2]}

    def h_event_retrieve(self, ctx: _Context, params: dict, id: str) -> tuple[int, dict]:
        out = copy.deepcopy(self._visible_event(ctx, id).event)
        self._expand(ctx, "events", out, self._expand_paths(params), in_list=False)
        return 200, out

    def h_line_items(self, ctx: _Context, params: dict, id: str) -> tuple[int, dict]:
        if id not in self._coll(ctx, "checkout_sessions"):
            raise self._missing(ctx, "checkout_sessions", id)
        items = ctx.account.line_items.get(id, [])
        limit = self._limit(params)
        ids = [it.get("id") for it in items]
        after, before = params.get("starting_after"), params.get("ending_before")
        start, end = 0, len(items)
        if after is not None:
            if after not in ids:
                raise errors.resource_missing("line item", after, param="starting_after")
            start = ids.index(after) + 1
        if before is not None:
            if before not in ids:
                raise errors.resource_missing("line item", before, param="ending_before")
            end = ids.index(before)
            start = max(0, end - limit)
        page = items[start:min(end, start + limit)]
        has_more = (start > 0) if before is not None else (start + limit < end)
        return 200, {"object": "list", "data": copy.deepcopy(page), "has_more": has_more,
                     "url": f"/v1/checkout/sessions/{id}/line_items"}

    def h_customer_create(self, ctx: _Context, params: dict) -> tuple[int, dict]:
        fields: dict[str, Any] = {}
        for name in ("email", "name", "phone", "description"):
            if name in params:
                fields[name] = self._str_param(params, name) or None
        address = params.get("address")
        if address is not None and address != "":
            if not isinstance(address, dict):
                raise StripeError(400, "Invalid object", param="address")
            for k in address:
                if k not in ("city", "country", "line1", "line2", "postal_code", "state"):
                    raise errors.unknown_parameter(f"address[{k}]")
            fields["address"] = address
        metadata = self._metadata(params.get("metadata"), {})
        extra: dict[str, Any] = {}
        if "balance" in params:
            extra["balance"] = self._int_param(params, "balance")
        if "preferred_locales" in params:
            locales = params["preferred_locales"]
            extra["preferred_locales"] = [] if locales == "" else list(locales)
        if "tax_exempt" in params:
            if params["tax_exempt"] not in TAX_EXEMPT:
                raise errors.invalid_enum("tax_exempt", TAX_EXEMPT)
            extra["tax_exempt"] = params["tax_exempt"]
        if "invoice_prefix" in params:
            prefix = self._str_param(params, "invoice_prefix")
            if not re.fullmatch(r"[A-Z0-9]{3,12}", prefix):
                raise StripeError(400, "Invoice prefix must be 3-12 uppercase letters or numbers.",
                                  param="invoice_prefix")
            extra["invoice_prefix"] = prefix
        obj = customer_object(self._ids.customer(), created=int(time.time()), livemode=ctx.livemode,
                              invoice_prefix=self._ids.hex_upper(8), metadata=metadata, extra=extra, **fields)
        self._coll(ctx, "customers").put(obj["id"], obj["created"], obj)
        out = copy.deepcopy(obj)
        self._expand(ctx, "customers", out, self._expand_paths(params), in_list=False)
        return 200, out

    def h_customer_delete(self, ctx: _Context, params: dict, id: str) -> tuple[int, dict]:
        if not self._coll(ctx, "customers").delete(id):
            raise self._missing(ctx, "customers", id)
        return 200, {"id": id, "object": "customer", "deleted": True}

    def _str_param(self, params: dict, name: str) -> str:
        value = params[name]
        if not isinstance(value, str):
            raise StripeError(400, f"Invalid string: {value!r}", param=name)
        return value

    def _int_param(self, params: dict, name: str) -> int:
        value = params[name]
        if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
            raise errors.invalid_integer(name, str(value))
        return int(value)

    def _bool_param(self, params: dict, name: str) -> bool:
        value = params[name]
        if value not in ("true", "false"):
            raise StripeError(400, f"Invalid boolean: {value}", param=name)
        return value == "true"

    def _metadata(self, raw: Any, current: dict) -> dict:
        """Apply Stripe's metadata rules: '' clears all, key='' removes a key, other keys merge."""
        if raw is None:
            return dict(current)
        if raw == "":
            return {}
        if not isinstance(raw, dict):
            raise StripeError(400, "Invalid object", param="metadata")
        out = dict(current)
        for k, v in raw.items():
            if not isinstance(v, str):
                raise StripeError(400, "Invalid string", param=f"metadata[{k}]")
            if len(k) > 40:
                raise StripeError(400, f"Metadata keys can have up to 40 characters; the key {k!r} is too long.",
                                  param=f"metadata[{k}]")
            if len(v) > 500:
                raise StripeError(400, "Metadata values can have up to 500 characters.", param=f"metadata[{k}]")
            if v == "":
                out.pop(k, None)
            else:
                out[k] = v
        if len(out) > 50:
            raise StripeError(400, "You can specify up to 50 metadata keys.", param="metadata")
        return out

    def _validate_url(self, ctx: _Context, url: Any) -> str:
        if not isinstance(url, str) or url == "":
            raise errors.missing_parameter("url")
        parts = urlsplit(url)
        if "://" not in url or not parts.scheme:
            raise StripeError(400, "Invalid URL: An explicit scheme (such as https) must be provided.", param="url")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StripeError(400, f"Invalid URL: {url}: Not a valid URL", param="url")
        if ctx.livemode and parts.scheme != "https":
            raise StripeError(400, f'Invalid URL: {url}. URLs in livemode must begin with "https://"', param="url")
        if not self.allow_local_urls and _is_local_host(parts.hostname):
            raise StripeError(400, "Invalid URL: URL must be publicly accessible. Consider using a tool like the "
                                   "Stripe CLI to test webhooks locally.", param="url")
        return url

    def _validate_events(self, events: Any) -> list[str]:
        if events is None or events == "":
            raise errors.missing_parameter("enabled_events")
        if isinstance(events, str):
            events = [events]
        if not isinstance(events, list) or not events:
            raise errors.missing_parameter("enabled_events")
        for i, name in enumerate(events):
            if name not in WEBHOOK_EVENT_TYPES:
                raise errors.invalid_enum(f"enabled_events[{i}]", WEBHOOK_EVENT_TYPES)
        return list(events)

    def h_webhook_create(self, ctx: _Context, params: dict) -> tuple[int, dict]:
        if "url" not in params:
            raise errors.missing_parameter("url")
        if "enabled_events" not in params:
            raise errors.missing_parameter("enabled_events")
        url = self._validate_url(ctx, params["url"])
        events = self._validate_events(params["enabled_events"])
        api_version = params.get("api_version")
        if api_version is not None and api_version not in API_VERSIONS:
            raise errors.invalid_enum("api_version", API_VERSIONS)
        if "connect" in params and self._bool_param(params, "connect"):
            raise errors.unsupported("connect=true (Connect webhook endpoints)", param="connect")
        description = self._str_param(params, "description") or None if "description" in params else None
        metadata = self._metadata(params.get("metadata"), {})
        coll = self._coll(ctx, "webhook_endpoints")
        if len(coll) >= MAX_WEBHOOK_ENDPOINTS:
            mode = "live" if ctx.livemode else "test"
            raise StripeError(400, f"You have reached the maximum of {MAX_WEBHOOK_ENDPOINTS} {mode} webhook endpoints.")
        obj = webhook_endpoint_object(self._ids.webhook_endpoint(), url=url, enabled_events=events,
                                      created=int(time.time()), livemode=ctx.livemode, description=description,
                                      metadata=metadata, api_version=api_version, secret=self._ids.webhook_secret())
        coll.put(obj["id"], obj["created"], obj)
        return 200, copy.deepcopy(obj)

    def h_webhook_update(self, ctx: _Context, params: dict, id: str) -> tuple[int, dict]:
        coll = self._coll(ctx, "webhook_endpoints")
        obj = coll.items.get(id)
        if obj is None:
            raise self._missing(ctx, "webhook_endpoints", id)
        changes: dict[str, Any] = {}
        if "url" in params:
            changes["url"] = self._validate_url(ctx, params["url"])
        if "enabled_events" in params:
            changes["enabled_events"] = self._validate_events(params["enabled_events"])
        if "disabled" in params:
            changes["status"] = "disabled" if self._bool_param(params, "disabled") else "enabled"
        if "description" in params:
            changes["description"] = self._str_param(params, "description") or None
        if "metadata" in params:
            changes["metadata"] = self._metadata(params["metadata"], obj["metadata"])
        obj.update(changes)
        return 200, self._public("webhook_endpoints", copy.deepcopy(obj))

    def h_webhook_delete(self, ctx: _Context, params: dict, id: str) -> tuple[int, dict]:
        coll = self._coll(ctx, "webhook_endpoints")
        if id not in coll:
            raise self._missing(ctx, "webhook_endpoints", id)
        coll.delete(id)
        coll.deleted.discard(id)
        return 200, {"id": id, "object": "webhook_endpoint", "deleted": True}

    # ------------------------------------------------------------------ control plane (/_double/)

    def _control(self, request: Request) -> Response:
        remote = request.remote_addr or ""
        try:
            if not ipaddress.ip_address(remote).is_loopback:
                return self._json_response(403, {"error": "control endpoints are loopback-only"})
        except ValueError:
            return self._json_response(403, {"error": "control endpoints are loopback-only"})
        path = request.path.rstrip("/")
        method = request.method.upper()
        try:
            body = request.get_json(silent=True) if request.mimetype == "application/json" else None
            body = body or {}
            result = self._control_dispatch(method, path, request, body)
            if result is None:
                return self._json_response(404, {"error": f"no control route {method} {path}"})
            return self._json_response(200, result)
        except (KeyError, ValueError, TypeError) as exc:
            return self._json_response(400, {"error": f"{type(exc).__name__}: {exc}"})

    def _control_dispatch(self, method: str, path: str, request: Request, body: dict) -> Any:
        parts = path.split("/")[2:]  # after "", "_double"
        if method == "GET" and parts == ["health"]:
            return {"ok": True}
        if method == "POST" and parts == ["accounts"]:
            account = self.add_account(email=body.get("email"), business_name=body.get("business_name"),
                                       livemode=bool(body.get("livemode", False)), id=body.get("id"),
                                       api_version=check_version(body.get("api_version") or DEFAULT_API_VERSION))
            return {"account": account, "secret_key": self.add_secret_key(account["id"])}
        if method == "POST" and parts == ["fail_next"]:
            self.fail_next(int(body.get("n", 1)), int(body.get("status", 429)), body.get("path_prefix"),
                           body.get("code"))
            return {"ok": True}
        if method == "POST" and parts == ["rate_limit"]:
            self.set_rate_limit(body.get("per_second"), body.get("list_per_second"))
            return {"ok": True}
        if method == "POST" and parts == ["latency"]:
            ms = body.get("ms")
            self.set_latency(float(ms) / 1000.0 if ms is not None else float(body.get("seconds", 0)))
            return {"ok": True}
        if method == "POST" and parts == ["down"]:
            self.set_down(bool(body.get("down", True)))
            return {"ok": True}
        if method == "POST" and parts == ["webhook_hosts"]:
            self.map_webhook_host(body["host"], body["base_url"])
            return {"ok": True}
        if method == "GET" and parts == ["requests"]:
            return {"data": [r._asdict() for r in self.requests]}
        if method == "GET" and parts == ["stats"]:
            return self.stats(request.args.get("path_prefix") or None, float(request.args.get("window", 1.0)))
        if method == "GET" and parts == ["deliveries"]:
            with self._lock:
                return {"data": list(self.deliveries)}
        if method == "POST" and parts == ["deliveries"]:
            self.drop_deliveries(bool(body.get("dropped", True)))
            return {"ok": True, "dropped": self._dropped}
        if len(parts) >= 3 and parts[0] == "accounts":
            account_id, rest = parts[1], parts[2:]
            livemode = body.get("livemode")
            if method == "POST" and rest == ["secret_keys"]:
                return {"key": self.add_secret_key(account_id, livemode)}
            if method == "POST" and rest == ["restricted_keys"]:
                return {"key": self.add_restricted_key(account_id, body["permissions"], livemode)}
            if method == "POST" and rest == ["customers"]:
                return self.add_customer(account_id, **body)
            if method == "POST" and rest == ["customers", "generate"]:
                return {"generated": self.generate_customers(account_id, int(body["n"]), body.get("start_created"),
                                                             livemode, id_prefix=body.get("id_prefix"),
                                                             metadata=body.get("metadata"))}
            if method == "POST" and rest == ["charges", "generate"]:
                return {"generated": self.generate_charges(account_id, int(body["n"]), body.get("start_created"),
                                                           livemode, amount=int(body.get("amount", 2900)))}
            if method == "POST" and len(rest) == 2 and rest[0] == "objects":
                # Either the object itself, or {"object": {...}, "line_items": [...]} for checkout sessions.
                if isinstance(body.get("object"), dict):
                    return self.add_object(account_id, rest[1], body["object"], line_items=body.get("line_items"))
                return self.add_object(account_id, rest[1], body)
            if method == "GET" and rest == ["endpoints"]:
                return {"data": self.endpoints(account_id)}
            if method == "POST" and rest == ["deliver"]:
                results = self.deliver(account_id, request.get_data(), request.args.get("endpoint_id"))
                return {"results": [{"endpoint_id": e, "status": s} for e, s in results]}
            return self._control_events(method, account_id, rest, body)
        return None

    def _control_events(self, method: str, account_id: str, rest: list[str], body: dict) -> Any:
        """Control routes for recorded events and endpoint changes under /_double/accounts/<id>/."""
        if method == "GET" and rest == ["events"]:
            return {"data": self.events(account_id)}
        if method == "POST" and rest == ["events"]:
            return self.emit(account_id, body["type"], body["object"], livemode=body.get("livemode"),
                             created=body.get("created"), api_version=body.get("api_version"),
                             previous_attributes=body.get("previous_attributes"),
                             deliver=bool(body.get("deliver", True)), event_id=body.get("id"))
        if method == "POST" and rest == ["events", "many"]:
            # A benchmark's backlog in a few calls: {"events": [{"type", "object", "created", ...}], "deliver"}.
            return {"ids": self.emit_many(account_id, body["events"], deliver=bool(body.get("deliver", True)))}
        if method == "POST" and len(rest) == 3 and rest[0] == "events" and rest[2] == "redeliver":
            results = self.redeliver(account_id, rest[1], body.get("endpoint_id"))
            return {"results": [{"endpoint_id": e, "status": s} for e, s in results]}
        if method == "POST" and len(rest) == 3 and rest[0] == "endpoints" and rest[2] == "disable":
            return self.disable_endpoint(account_id, rest[1])
        if method == "DELETE" and len(rest) == 2 and rest[0] == "endpoints":
            self.delete_endpoint(account_id, rest[1])
            return {"id": rest[1], "object": "webhook_endpoint", "deleted": True}
        return None


EMIT_OPTIONS = frozenset({"livemode", "created", "api_version", "previous_attributes", "event_id"})


def _event_item(item: Any) -> tuple[str, Any, dict]:
    """Accept emit_many items as (type, obj[, kwargs]) or {"type", "object", **kwargs}."""
    if isinstance(item, dict):
        opts = dict(item)
        event_type, obj = opts.pop("type"), opts.pop("object")
    else:
        event_type, obj, *rest = item
        opts = dict(rest[0]) if rest else {}
    unknown = set(opts) - EMIT_OPTIONS
    if unknown:
        raise TypeError(f"unknown emit option(s) {sorted(unknown)}; known: {sorted(EMIT_OPTIONS)}")
    if not isinstance(obj, dict):
        raise TypeError(f"an event's object must be a dict, not {type(obj).__name__}")
    return event_type, obj, opts


def _kind_route(kind: str, path: str) -> list[tuple]:
    """List and retrieve routes for a read-only resource."""
    base = re.escape(path)
    return [
        ("GET", re.compile(base), kind, "read", f"{kind}.list",
         lambda self, ctx, params, _k=kind: self.h_list(ctx, params, _k)),
        ("GET", re.compile(base + r"/(?P<id>[^/]+)"), kind, "read", "retrieve",
         lambda self, ctx, params, id, _k=kind: self.h_retrieve(ctx, params, _k, id)),
    ]


# (method, path regex, restricted-key resource, level, param set name, handler)
ROUTES: list[tuple] = [
    ("GET", re.compile(r"/v1/account"), "account", "read", "account", StripeDouble.h_account),
    *_kind_route("customers", "/v1/customers"),
    ("POST", re.compile(r"/v1/customers"), "customers", "write", "customers.create", StripeDouble.h_customer_create),
    ("DELETE", re.compile(r"/v1/customers/(?P<id>[^/]+)"), "customers", "write", "customers.delete",
     StripeDouble.h_customer_delete),
    *_kind_route("charges", "/v1/charges"),
    *_kind_route("subscriptions", "/v1/subscriptions"),
    *_kind_route("invoices", "/v1/invoices"),
    ("GET", re.compile(r"/v1/checkout/sessions/(?P<id>[^/]+)/line_items"), "checkout_sessions", "read",
     "line_items", StripeDouble.h_line_items),
    *_kind_route("checkout_sessions", "/v1/checkout/sessions"),
    *_kind_route("webhook_endpoints", "/v1/webhook_endpoints"),
    ("POST", re.compile(r"/v1/webhook_endpoints"), "webhook_endpoints", "write", "webhook_endpoints.create",
     StripeDouble.h_webhook_create),
    ("POST", re.compile(r"/v1/webhook_endpoints/(?P<id>[^/]+)"), "webhook_endpoints", "write",
     "webhook_endpoints.update", StripeDouble.h_webhook_update),
    ("DELETE", re.compile(r"/v1/webhook_endpoints/(?P<id>[^/]+)"), "webhook_endpoints", "write",
     "webhook_endpoints.delete", StripeDouble.h_webhook_delete),
    ("GET", re.compile(r"/v1/events"), "events", "read", "events.list", StripeDouble.h_events_list),
    ("GET", re.compile(r"/v1/events/(?P<id>[^/]+)"), "events", "read", "retrieve", StripeDouble.h_event_retrieve),
]
