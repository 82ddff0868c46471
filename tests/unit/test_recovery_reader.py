"""The recovery reader hands Stripe's events over oldest first, page by page, whether or not an event
precedes the start, and sees each event of the asked types exactly once."""
import time

import pytest
import stripe

from tests.stripe_double import StripeDouble
from webapp.stripe_sync.budget import Budget, Pacer
from webapp.stripe_sync.history.reader import ReaderSettings
from webapp.stripe_sync.recovery.reader import EventsReader


@pytest.fixture
def double():
    d = StripeDouble(seed=5)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def client(double):
    account = double.add_account(email="owner@engineroom.test", id="acct_1Reader")
    return stripe.StripeClient(double.add_secret_key(account["id"]), base_addresses={"api": double.url},
                               max_network_retries=0)


def emit(double, n, start, kind="customer.created"):
    """n events one second apart from `start`; returns their ids oldest first."""
    items = [(kind, {"id": f"cus_R{start + i}", "object": "customer", "email": f"r{i}@example.test"},
              {"created": start + i}) for i in range(n)]
    return double.emit_many("acct_1Reader", items, deliver=False)


def read(client, since, types=("customer.created", "customer.updated")):
    reader = EventsReader(client, list(types), Pacer(Budget(None, "test", 0)), ReaderSettings(backoff_base=0.01))
    pages = list(reader.walk(since))
    return pages, reader


def test_pages_forward_from_the_event_before_the_start(double, client):
    now = int(time.time())
    before = emit(double, 30, now - 3000)
    after = emit(double, 250, now - 2000)
    emit(double, 40, now - 1500, kind="charge.succeeded")  # another type: never read
    pages, reader = read(client, now - 2000)
    ids = [e["id"] for page in pages for e in page]
    assert ids == after and not set(before) & set(ids)
    assert [len(p) for p in pages] == [100, 100, 50]
    created = [e["created"] for page in pages for e in page]
    assert created == sorted(created)
    assert reader.requests == 1 + 3  # the anchor, then three pages with ending_before


def test_without_an_earlier_event_the_range_is_read_and_reversed(double, client):
    now = int(time.time())
    ids = emit(double, 180, now - 1000)
    pages, _reader = read(client, now - 5000)
    assert [e["id"] for page in pages for e in page] == ids
    assert [len(p) for p in pages] == [100, 80]


def test_a_429_is_waited_out_and_the_walk_goes_on(double, client):
    now = int(time.time())
    ids = emit(double, 120, now - 1000)
    emit(double, 1, now - 2000)
    double.fail_next(2, 429, path_prefix="/v1/events")
    pages, reader = read(client, now - 1500)
    assert [e["id"] for page in pages for e in page] == ids
    assert reader.rate_limited == 2
