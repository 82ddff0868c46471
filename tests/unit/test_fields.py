"""The mappable field catalog, value extraction, name split and type checks the mapping page relies on."""

import json

import pytest

from tests.helpers import EVENTS_DIR
from webapp.stripe_sync.connect import fields
from webapp.stripe_sync.apply.customer import resolve_customer_data


def load_object(name):
    """The data.object of a shared fixture."""
    event = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    return event["type"], event["data"]["object"]


def test_fixed_choices_and_labels():
    assert fields.stripe_field_choices([]) == [
        ("email", "Customer Email"),
        ("name", "Customer Name"),
        ("phone", "Customer Phone"),
        ("address.line1", "Address Line 1"),
        ("address.line2", "Address Line 2"),
        ("address.city", "City"),
        ("address.state", "State"),
        ("address.postal_code", "Postal Code"),
        ("address.country", "Country"),
        ("description", "Customer Description"),
        ("id", "Stripe ID"),
    ]


def test_metadata_choices_follow_fixed_ones_sorted_and_unique():
    choices = fields.stripe_field_choices(["plan", "app_user_id", "plan", " ", None])
    assert choices[-2:] == [("metadata.app_user_id", "Metadata: app_user_id"), ("metadata.plan", "Metadata: plan")]
    assert len(choices) == 13
    assert fields.label_for("metadata.plan") == "Metadata: plan"
    assert fields.label_for("email") == "Customer Email"
    assert fields.is_known_key("metadata.x") and fields.is_known_key("address.city")
    assert not fields.is_known_key("metadata.") and not fields.is_known_key("password")


def test_collect_metadata_keys_from_customers():
    customers = [
        load_object("customer.updated.json")[1],
        load_object("edge/customer.created.json")[1],
        load_object("edge/customer.updated.json")[1],
        {"metadata": None},
        {},
    ]
    assert fields.collect_metadata_keys(customers) == ["app_user_id", "source"]
    assert fields.collect_metadata_keys(customers, limit=1) == ["app_user_id"]
    assert fields.collect_metadata_keys(iter([{"metadata": {"b": "1", "a": "2"}}]), max_keys=1) == ["a"]


def test_collect_metadata_keys_reads_lazily():
    def endless():
        n = 0
        while True:
            n += 1
            yield {"metadata": {f"k{n % 3}": "v"}}

    assert fields.collect_metadata_keys(endless(), limit=10) == ["k0", "k1", "k2"]


def test_extract_values_from_resolved_customer():
    data = resolve_customer_data(*load_object("customer.updated.json"))
    assert fields.extract_value(data, "email") == "ada@example.com"
    assert fields.extract_value(data, "name") == "Ada Lovelace"
    assert fields.extract_value(data, "phone") == "+16175550142"
    assert fields.extract_value(data, "address.line1") == "1815 Analytical Engine Row"
    assert fields.extract_value(data, "address.postal_code") == "02110"
    assert fields.extract_value(data, "address.country") == "US"
    assert fields.extract_value(data, "id") == "cus_Visible1"
    assert fields.extract_value(data, "description") is None
    assert fields.extract_value(data, "metadata.app_user_id") == "user_1815"
    assert fields.extract_value(data, "metadata.missing") is None
    assert fields.extract_value(data, "nonsense") is None


def test_extract_values_from_plain_dicts_and_raw_customers():
    raw = load_object("customer.created.json")[1]
    assert fields.extract_value(raw, "address.city") is None  # address is null on Stripe's side
    assert fields.extract_value(raw, "metadata.app_user_id") == "user_1815"
    data = resolve_customer_data(*load_object("edge/customer.created.json"))
    assert fields.extract_value(data.to_dict(), "description") == "Walk-in customer, no email on file"
    assert fields.extract_value(data.to_dict(), "email") is None


@pytest.mark.parametrize(
    "full, expected",
    [
        ("Grace Brewster Hopper", ("Grace", "Brewster Hopper")),
        ("Cher", ("Cher", "")),
        ("  Ada   Lovelace  ", ("Ada", "Lovelace")),
        ("Ada\t\nKing  Lovelace", ("Ada", "King Lovelace")),
        ("", ("", "")),
        ("   ", ("", "")),
        (None, ("", "")),
        (
            "José Núñez-García <script>alert(1)</script> O'Brien",
            ("José", "Núñez-García <script>alert(1)</script> O'Brien"),
        ),
    ],
)
def test_split_name(full, expected):
    assert fields.split_name(full) == expected


def test_name_split_note_mentions_both_fields():
    assert "First Name" in fields.NAME_SPLIT_NOTE and "Last Name" in fields.NAME_SPLIT_NOTE
    assert "Customer Name" in fields.NAME_SPLIT_NOTE


@pytest.mark.parametrize("key", [k for k, _ in fields.stripe_field_choices(["plan"])])
def test_everything_fits_text_and_nothing_fits_number_or_date(key):
    assert fields.value_fits(key, "text")
    assert not fields.value_fits(key, "number")
    assert not fields.value_fits(key, "date")


@pytest.mark.parametrize(
    "key, crm_type, fits",
    [
        ("email", "email", True),
        ("email", "phone", False),
        ("email", "dropdown", False),
        ("phone", "phone", True),
        ("phone", "email", False),
        ("name", "email", False),
        ("address.country", "dropdown", True),
        ("address.state", "dropdown", True),
        ("address.city", "dropdown", False),
        ("id", "number", False),
        ("description", "number", False),
        ("metadata.plan", "dropdown", True),
        ("metadata.plan", "email", False),
        ("metadata.plan", "phone", False),
        ("email", "TEXT", True),
        ("email", "checkbox", False),
        ("unknown_key", "text", True),
        ("unknown_key", "email", False),
    ],
)
def test_value_fits(key, crm_type, fits):
    assert fields.value_fits(key, crm_type) is fits


def test_misfit_reason_sentences():
    assert fields.misfit_reason("email", "Age", "number") == (
        "Customer Email is text and cannot be stored in the number field “Age”."
    )
    assert fields.misfit_reason("email", "Email", "email") is None
    assert fields.misfit_reason("address.country", "Country", "dropdown") is None
    reason = fields.misfit_reason("metadata.signup", "Signed up", "date")
    assert reason.startswith("Metadata: signup")
    assert "text or dropdown" in reason and "“Signed up”" in reason
