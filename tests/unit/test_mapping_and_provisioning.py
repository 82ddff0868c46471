"""Mapping validation and endpoint helpers, without Stripe or a database."""
from types import SimpleNamespace

from webapp.stripe_sync.connect import endpoints
from webapp.stripe_sync.connect.mapping import MappingRow, effective_rows, rows_from_form, validate

FIELDS = {i: SimpleNamespace(id=i, key=k, label=l, type=t) for i, (k, l, t) in enumerate([
    ("email", "Email", "email"), ("first_name", "First Name", "text"), ("last_name", "Last Name", "text"),
    ("phone", "Phone", "phone"), ("custom_5", "Age", "number"), ("custom_6", "Stripe customer", "text"),
], start=1)}


def rows(*spec):
    return [MappingRow(role, stripe, field) for role, stripe, field in spec]


def test_minimal_mapping_is_valid_and_skips_the_empty_id_row():
    result = validate(rows(("email", "email", 1), ("id", "id", None)), FIELDS)
    assert result.ok
    assert [(r.stripe_field, r.field_id) for r in effective_rows(result)] == [("email", 1)]


def test_email_is_required():
    result = validate(rows(("email", "", 1), ("id", "id", 6)), FIELDS)
    assert not result.ok and "Email is required" in result.general[0]


def test_same_crm_field_twice_marks_the_later_row():
    result = validate(rows(("email", "email", 1), ("id", "id", 6), ("extra", "description", 6)), FIELDS)
    assert result.rows[1].error is None
    assert "“Stripe customer” is already filled by another row" in result.rows[2].error


def test_customer_name_claims_first_and_last_name():
    result = validate(rows(("email", "email", 1), ("extra", "name", 1 + 1), ("extra", "description", 3)), FIELDS)
    assert "Last Name" in result.rows[2].error and "Customer Name fills First Name and Last Name" in result.rows[2].error


def test_value_that_cannot_fit_says_which():
    result = validate(rows(("email", "email", 1), ("extra", "name", 5)), FIELDS)
    assert "number field “Age”" in result.rows[1].error


def test_unknown_metadata_key_and_missing_field():
    result = validate(rows(("email", "email", 1), ("extra", "metadata.ghost", 6), ("extra", "phone", 99)),
                      FIELDS, metadata_keys=["plan"])
    assert "not available" in result.rows[1].error
    assert "no longer exists" in result.rows[2].error


def test_half_filled_row_is_an_error_but_an_empty_one_is_ignored():
    result = validate(rows(("email", "email", 1), ("extra", "phone", None), ("extra", "", None)), FIELDS)
    assert "Choose both" in result.rows[1].error and result.rows[2].error is None


class Form(dict):
    def getlist(self, key):
        return self.get(key, [])


def test_rows_from_form_pins_the_fixed_sides():
    form = Form(row_role=["email", "id", "bogus"], stripe_field=["email", "name", "phone"], crm_field=["4", "6", "x"])
    parsed = rows_from_form(form, email_field_id=1)
    assert [(r.role, r.stripe_field, r.field_id) for r in parsed] == [
        ("email", "email", 1), ("id", "id", 6), ("extra", "phone", None)]


def test_describe_endpoints_marks_ours_and_in_use():
    eps = [{"id": "we_1", "url": "https://crm.example.test/webhooks/stripe/a", "status": "enabled", "created": 1},
           {"id": "we_2", "url": "https://crm.example.test/webhooks/stripe/b", "status": "disabled", "created": 2},
           {"id": "we_3", "url": "https://other.example/hook", "status": "enabled", "created": 3}]
    infos = endpoints.describe_endpoints(eps, "https://crm.example.test/", {"we_1": "Customer (a@b.c)"})
    assert [(i.id, i.ours, i.removable) for i in infos] == [("we_1", True, False), ("we_2", True, True),
                                                           ("we_3", False, False)]


def test_base_url_warning():
    assert endpoints.base_url_warning("https://crm.example.com", configured=True) is None
    for url in ("http://localhost:5000", "http://127.0.0.1:5000", "http://10.0.0.4", "http://box.local"):
        assert "Stripe cannot deliver" in endpoints.base_url_warning(url, configured=True)
    assert "PUBLIC_BASE_URL" in endpoints.base_url_warning("https://crm.example.com", configured=False)
