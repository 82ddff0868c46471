"""Pure rules of event processing: mapping plans, out-of-order stamps, money,
error messages and the event envelope check."""
import pytest
import stripe

from webapp.stripe_sync.apply.contacts import plan_field_writes
from webapp.stripe_sync.apply.customer import CustomerData
from webapp.stripe_sync.queue.enqueue import job_id_for, retry_policy
from webapp.money import format_amount
from webapp.stripe_sync.apply.stamps import is_newer, subscription_update_wins
from webapp.stripe_sync.apply.failures import scrub, short_message
from webapp.webhooks.intake import NotAnEvent, parse_event

ADA = CustomerData(id="cus_1", email="ada@example.com", name="Grace Brewster Hopper", phone="+1 555",
                   address={"line1": "1 Row", "line2": None, "city": "Boston", "state": "MA",
                            "postal_code": "02110", "country": "US"},
                   metadata={"plan": "pro"})


class TestPlanFieldWrites:
    def test_name_to_first_or_last_fills_both(self):
        for target in ("first_name", "last_name"):
            assert plan_field_writes([("name", target)], ADA) == {"first_name": "Grace",
                                                                  "last_name": "Brewster Hopper"}

    def test_single_word_name_clears_last_name(self):
        cher = CustomerData(email="c@example.com", name="Cher")
        assert plan_field_writes([("name", "first_name")], cher) == {"first_name": "Cher", "last_name": ""}

    def test_name_to_a_custom_field_is_whole(self):
        assert plan_field_writes([("name", "custom_7")], ADA) == {"custom_7": "Grace Brewster Hopper"}

    def test_other_fields_and_metadata(self):
        mapping = [("email", "email"), ("phone", "phone"), ("address.city", "custom_1"),
                   ("metadata.plan", "custom_2"), ("id", "custom_3"), ("description", "custom_4")]
        assert plan_field_writes(mapping, ADA) == {"phone": "+1 555", "custom_1": "Boston", "custom_2": "pro",
                                                   "custom_3": "cus_1"}

    def test_missing_values_never_clear(self):
        bare = CustomerData(email="b@example.com")
        assert plan_field_writes([("name", "first_name"), ("phone", "phone")], bare) == {}

    def test_html_is_kept_verbatim(self):
        jose = CustomerData(email="j@example.com", name="José <script>alert(1)</script> O'Brien")
        assert plan_field_writes([("name", "last_name")], jose)["last_name"] == "<script>alert(1)</script> O'Brien"


class TestOrdering:
    def test_newer_created_wins_ties_go_to_later_arrival(self):
        assert is_newer((10, 1), None)
        assert is_newer((11, 1), (10, 5))
        assert is_newer((10, 6), (10, 5))
        assert is_newer((10, 5), (10, 5))  # the same event applied again (a re-sync) may refresh what it wrote
        assert not is_newer((10, 4), (10, 5))
        assert not is_newer((9, 99), (10, 1))

    def test_subscription_state_only_moves_forward(self):
        assert subscription_update_wins(None, None, "ACTIVE", "customer.subscription.created", (1, 1))
        assert not subscription_update_wins("CANCELLED", (20, 5), "PAYMENT_FAILED",
                                            "customer.subscription.updated", (10, 9))
        assert subscription_update_wins("PAUSED", (10, 1), "ACTIVE", "customer.subscription.resumed", (11, 2))

    def test_cancelled_and_paused_survive_a_same_second_update(self):
        assert not subscription_update_wins("CANCELLED", (10, 1), "ACTIVE", "customer.subscription.updated", (10, 2))
        assert not subscription_update_wins("PAUSED", (10, 1), "ACTIVE", "customer.subscription.updated", (10, 2))
        assert subscription_update_wins("PAUSED", (10, 1), "ACTIVE", "customer.subscription.resumed", (10, 2))
        assert subscription_update_wins("PAUSED", (10, 1), "CANCELLED", "customer.subscription.deleted", (10, 2))
        assert subscription_update_wins("ACTIVE", (10, 1), "PAYMENT_FAILED", "customer.subscription.updated",
                                        (10, 2))


@pytest.mark.parametrize("amount,currency,text", [
    (45000, "usd", "$450.00"), (2900, "USD", "$29.00"), (1250, "eur", "€12.50"), (1000, "jpy", "¥1,000"),
    (1234567, "gbp", "£12,345.67"), (1500, "sek", "15.00 SEK"), (12345, "kwd", "12.345 KWD"),
    (-500, "usd", "-$5.00"), (None, "usd", "—"), (0, None, "0.00"),
])
def test_format_amount(amount, currency, text):
    assert format_amount(amount, currency) == text


def test_short_messages_hide_secrets_and_sql_parameters():
    from sqlalchemy.exc import IntegrityError

    err = IntegrityError("INSERT INTO contacts ...", {"email": "ada@example.com"}, Exception("UNIQUE failed"))
    assert short_message(err) == "Database error: Exception: UNIQUE failed"
    assert "ada@example.com" not in short_message(err)
    assert scrub("key sk_test_abc123 and whsec_zzz9 and rk_live_Q1") == "key sk_… and whsec_… and rk_…"
    rate = stripe.RateLimitError("Too many", http_status=429)
    assert short_message(rate).startswith("Stripe API error 429: Stripe is rate limiting")
    assert len(short_message(ValueError("x" * 1000))) == 300


def test_job_ids_and_retry_policy():
    from flask import Flask

    assert job_id_for(42) == "stripe-event-42"
    bare = Flask(__name__)
    with bare.app_context():
        policy = retry_policy()
        assert (policy.max, policy.intervals) == (5, [10, 60, 300, 1800, 7200])  # the defaults
        bare.config["EVENT_RETRY_INTERVALS"] = [10, 60, 300]
        assert (retry_policy().max, retry_policy().intervals) == (3, [10, 60, 300])
        assert retry_policy(1).intervals == [300] and retry_policy(0) is None
        bare.config["EVENT_RETRY_INTERVALS"] = []
        assert retry_policy() is None


class TestParseEvent:
    good = {"id": "evt_1", "object": "event", "type": "charge.succeeded", "created": 1, "data": {"object": {}}}

    def test_accepts_an_event(self):
        import json

        assert parse_event(json.dumps(self.good))["id"] == "evt_1"

    @pytest.mark.parametrize("change", [
        {"id": ""}, {"id": 5}, {"type": None}, {"created": "1"}, {"created": True}, {"data": {}},
        {"data": {"object": []}}, {"data": None},
    ])
    def test_rejects_what_is_not_an_event(self, change):
        import json

        with pytest.raises(NotAnEvent):
            parse_event(json.dumps({**self.good, **change}))

    @pytest.mark.parametrize("text", ["", "nope", "[]", "null", "1"])
    def test_rejects_non_objects(self, text):
        with pytest.raises(NotAnEvent):
            parse_event(text)


def test_a_customers_events_share_a_drain_shard():
    from webapp.stripe_sync.queue.pending import shard_for

    customer = {"id": "evt_1", "data": {"object": {"object": "customer", "id": "cus_A"}}}
    charge = {"id": "evt_2", "data": {"object": {"object": "charge", "id": "ch_1", "customer": "cus_A"}}}
    expanded = {"id": "evt_3", "data": {"object": {"object": "invoice", "customer": {"id": "cus_A"}}}}
    shards = {shard_for(e, 8) for e in (customer, charge, expanded)}
    assert len(shards) == 1 and 0 <= shards.pop() < 8
    spread = {shard_for({"id": "e", "data": {"object": {"object": "customer", "id": f"cus_{i}"}}}, 4)
              for i in range(40)}
    assert spread == {0, 1, 2, 3}  # customers are spread over every shard
    guest = {"id": "evt_9", "data": {"object": {"object": "checkout.session", "customer": None}}}
    assert shard_for(guest, 4) == shard_for(guest, 4) and shard_for(guest, 1) == 0
