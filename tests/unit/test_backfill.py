"""Historical sync's pure parts: backoff and Stripe's retry hints, list params and cursor recovery,
the shared request budget (on a real Redis), record envelopes and the page cache's stamp rules."""
import json
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest
import stripe

from webapp.stripe_sync.history.writer import Record, envelope, historical_event_id
from webapp.stripe_sync.apply.contacts import ContactCache
from webapp.stripe_sync.budget import Budget, backoff_delay, retry_after, should_retry
from webapp.stripe_sync.history.reader import HistoryReader, RateLimitedTooLong, ReaderSettings, Waiter
from webapp.stripe_sync.models import BACKFILL_STATE_LABELS, Backfill


def rate_limited(headers=None):
    return stripe.RateLimitError("Request rate limit exceeded.", http_status=429, headers=headers or {},
                                 code="rate_limit")


class TestBackoff:
    def test_grows_exponentially_with_jitter_and_a_cap(self):
        assert backoff_delay(0, 1.0, 60.0, uniform=lambda a, b: b) == 1.0
        assert backoff_delay(3, 1.0, 60.0, uniform=lambda a, b: b) == 8.0
        assert backoff_delay(10, 1.0, 60.0, uniform=lambda a, b: b) == 60.0
        assert backoff_delay(3, 1.0, 60.0, uniform=lambda a, b: a) == 4.0  # jitter: half to full

    def test_retry_after_is_the_floor_but_capped(self):
        assert backoff_delay(0, 0.01, 60.0, floor=7.0) == 7.0
        assert backoff_delay(0, 0.01, 60.0, floor=86400.0) == 600.0


class TestStripeHints:
    def test_retry_after_in_seconds_or_as_a_date(self):
        assert retry_after(rate_limited({"Retry-After": "3"})) == 3.0
        assert retry_after(rate_limited({"retry-after": "1.5"})) == 1.5
        later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
        assert 25 <= retry_after(rate_limited({"Retry-After": later})) <= 31
        assert retry_after(rate_limited({"Retry-After": "soon"})) is None
        assert retry_after(rate_limited()) is None

    def test_should_retry(self):
        assert should_retry(rate_limited({"Stripe-Should-Retry": "true"})) is True
        assert should_retry(rate_limited({"stripe-should-retry": "false"})) is False
        assert should_retry(rate_limited()) is None


class FakeList:
    """Stands in for the list request: answers (or raises) in turn and remembers the params."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, params):
        self.calls.append(params)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class RecordingWaiter(Waiter):
    def __init__(self):
        self.paused, self.waited = [], []

    def rate_limited(self, delay):
        self.paused.append(delay)

    def wait(self, delay):
        self.waited.append(delay)


PAGE = {"object": "list", "data": [{"id": "cus_2"}, {"id": "cus_1"}], "has_more": True}


def reader(kind="customer", *answers, retries=3):
    client = stripe.StripeClient("sk_test_unit", base_addresses={"api": "http://127.0.0.1:9"})
    r = HistoryReader(client, kind, Budget(None, "acct:test", 0), RecordingWaiter(),
                      ReaderSettings(backoff_base=0.01, backoff_max=0.05, rate_limit_retries=retries, error_retries=2))
    r.request = FakeList(*answers)
    return r


class TestHistoryReader:
    @pytest.mark.parametrize("kind,expected", [
        ("customer", {"limit": 100, "starting_after": "cus_9"}),
        ("charge", {"limit": 100, "starting_after": "cus_9", "expand": ["data.customer"]}),
        ("subscription", {"limit": 100, "status": "all", "starting_after": "cus_9", "expand": ["data.customer"]}),
        ("checkout_session", {"limit": 100, "status": "complete", "starting_after": "cus_9",
                              "expand": ["data.customer"]}),
    ])
    def test_params_per_kind(self, kind, expected):
        assert reader(kind)._params("cus_9", 123) == expected
        assert "starting_after" not in reader(kind)._params(None, None)

    def test_a_page_as_plain_dicts(self):
        page = reader("customer", PAGE).fetch(None, None)
        assert page.objects == PAGE["data"] and page.has_more is True

    def test_429s_pause_with_backoff_honouring_retry_after(self):
        r = reader("customer", rate_limited(), rate_limited({"Retry-After": "2"}), PAGE)
        r.fetch("cus_9", 1)
        assert len(r.waiter.paused) == 2 and r.waiter.paused[1] >= 2.0
        assert [c["starting_after"] for c in r.request.calls] == ["cus_9"] * 3

    def test_should_retry_false_is_not_retried(self):
        r = reader("customer", rate_limited({"Stripe-Should-Retry": "false"}), PAGE)
        with pytest.raises(stripe.RateLimitError):
            r.fetch(None, None)
        assert r.waiter.paused == []

    def test_a_storm_outlasting_the_retries(self):
        r = reader("customer", *[rate_limited()] * 3, PAGE, retries=2)
        with pytest.raises(RateLimitedTooLong, match="3 requests in a row"):
            r.fetch(None, None)

    def test_server_errors_back_off_then_give_up(self):
        error = stripe.APIError("boom", http_status=500)
        r = reader("customer", error, PAGE)
        assert r.fetch(None, None).objects == PAGE["data"] and len(r.waiter.waited) == 1
        r = reader("customer", error, error, error, PAGE)
        with pytest.raises(stripe.APIError):
            r.fetch(None, None)

    def test_a_vanished_cursor_continues_from_its_created_time(self):
        gone = stripe.InvalidRequestError("No such customer: 'cus_9'", param="starting_after",
                                          code="resource_missing", http_status=404)
        r = reader("customer", gone, PAGE, PAGE)
        r.fetch("cus_9", 1_700_000_123)
        assert r.request.calls[1] == {"limit": 100, "created": {"lte": 1_700_000_123}}
        r.fetch("cus_1", 1_700_000_100)  # the next page uses a live cursor again
        assert r.request.calls[2] == {"limit": 100, "starting_after": "cus_1"}

    def test_a_refused_expansion_falls_back_to_plain_lists(self):
        refused = stripe.InvalidRequestError("cannot expand", param="expand", http_status=400)
        r = reader("charge", refused, PAGE)
        r.fetch(None, None)
        assert "expand" in r.request.calls[0] and "expand" not in r.request.calls[1]


class TestBudget:
    def test_shared_spacing_through_redis(self, redis_server):
        import redis

        conn = redis.Redis.from_url(redis_server.url)
        conn.flushdb()
        a = Budget(conn, "acct_x:test", 50)  # 20 ms apart
        b = Budget(conn, "acct_x:test", 50)  # another job, same account
        other = Budget(conn, "acct_y:test", 50)
        started = time.monotonic()
        waits = [limiter.wait() for limiter in (a, b, a, b)]
        elapsed = time.monotonic() - started
        assert other.wait() == 0.0  # another account has its own budget
        assert waits[0] == 0.0 and all(w > 0.01 for w in waits[1:])  # each waited for the other's slot
        assert 0.055 <= elapsed < 0.15

    def test_hold_off_after_a_429_holds_every_job_of_the_account(self, redis_server):
        import redis

        conn = redis.Redis.from_url(redis_server.url)
        conn.flushdb()
        a = Budget(conn, "acct_x:test", 100)
        a.hold_off(0.5)
        assert 0.45 <= Budget(conn, "acct_x:test", 100).wait() <= 0.55

    def test_a_burst_goes_at_once_then_the_rate_holds(self, redis_server):
        import redis

        conn = redis.Redis.from_url(redis_server.url)
        conn.flushdb()
        budget = Budget(conn, "acct_x:live", 80, burst_seconds=0.1)  # 8 at once, then 12.5 ms apart
        started = time.monotonic()
        waits = [budget.wait() for _ in range(10)]
        elapsed = time.monotonic() - started
        assert waits[:8] == [0.0] * 8  # the burst went at once
        assert all(w <= 0.02 for w in waits[8:])  # the 9th and 10th waited at most about one interval each
        # ... and the rate held: the 10th went no sooner than two intervals after the burst (on a busy CPU the
        # calls themselves may take that long, so how long each waited is not the measure; the elapsed time is).
        assert elapsed >= 0.025 - 0.003

    def test_a_hold_is_not_cut_short_by_the_burst(self, redis_server):
        import redis

        conn = redis.Redis.from_url(redis_server.url)
        conn.flushdb()
        budget = Budget(conn, "acct_x:live", 80, burst_seconds=0.1)
        budget.hold_off(0.5)
        assert 0.45 <= budget.wait() <= 0.55

    def test_off_and_local_fallback(self):
        assert Budget(None, "k", 0).wait() == 0.0
        local = Budget(None, "k", 10)
        started = time.monotonic()
        assert local.wait() == 0.0
        assert local.wait() == pytest.approx(0.1, abs=0.01)
        assert time.monotonic() - started == pytest.approx(0.1, abs=0.02)


class TestRecords:
    def test_ids_and_envelope(self):
        obj = {"id": "ch_1", "object": "charge", "created": 1_789_740_127, "amount": 2900}
        record = Record(obj=obj, event_id=historical_event_id("charge", "ch_1"), event_type="charge.succeeded")
        event = json.loads(envelope(record, livemode=False))
        assert record.event_id == "hist_charge_ch_1"
        assert (event["id"], event["object"], event["type"], event["created"], event["livemode"]) == (
            "hist_charge_ch_1", "event", "charge.succeeded", 1_789_740_127, False)
        assert event["data"]["object"] == obj and event["historical"] is True

    def test_state_words(self):
        assert [BACKFILL_STATE_LABELS[s] for s in ("queued", "running", "paused", "finished", "failed",
                                                    "cancelled")] == [
            "queued", "running", "paused by rate limit", "finished", "failed", "cancelled"]
        assert Backfill(state="paused").is_active and not Backfill(state="finished").is_active


class TestContactCacheStamps:
    def test_same_rules_as_the_stamp_table(self):
        cache = ContactCache({})
        assert cache.stamp_allows(1, "first_name", (100, 7))
        assert not cache.stamp_allows(1, "first_name", (99, 8))   # older by Stripe's clock
        assert not cache.stamp_allows(1, "first_name", (100, 6))  # tie: the earlier arrival loses
        assert cache.stamp_allows(1, "first_name", (100, 9))      # tie: the later arrival wins
        assert cache.new_stamps == {(1, "first_name"): (100, 9)}
        assert cache.stamp_allows(2, "first_name", (1, 1))        # another contact has its own stamp
