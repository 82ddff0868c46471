"""The Customer Name row's target and "Create field"'s types, without Stripe or a database."""
from types import SimpleNamespace

from werkzeug.datastructures import MultiDict

from webapp.stripe_sync.connect.mapping import (
    MappingRow, carry_over, creatable_types, effective_rows, find_row, name_targets, rows_from_form, validate,
)

FIELDS = {i: SimpleNamespace(id=i, key=k, label=l, type=t, is_standard=k in ("email", "first_name", "last_name",
                                                                                  "phone"))
          for i, (k, l, t) in enumerate([
              ("email", "Email", "email"), ("first_name", "First Name", "text"), ("last_name", "Last Name", "text"),
              ("phone", "Phone", "phone"), ("custom_5", "Age", "number"), ("custom_6", "Full name", "text"),
          ], start=1)}


class Form(dict):
    def getlist(self, key):
        return self.get(key, [])


def test_customer_name_without_a_crm_field_is_stored_as_the_split():
    rows = rows_from_form(Form(row_role=["email", "extra"], stripe_field=["email", "name"], crm_field=["1", ""]), 1)
    result = validate(rows, FIELDS)
    assert result.ok
    assert [(r.stripe_field, r.field_id) for r in effective_rows(result)] == [("email", 1), ("name", 2)]


def test_customer_name_into_last_name_is_the_same_split_and_a_crafted_field_is_refused():
    rows = rows_from_form(Form(row_role=["email", "extra", "extra"], stripe_field=["email", "name", "name"],
                               crm_field=["1", "3", "²"]), 1)
    result = validate(rows, FIELDS)
    assert rows[1].field_id == 2 and rows[1].error is None
    assert "Choose both a Stripe field and a CRM field" in rows[2].error


def test_the_whole_name_in_one_text_field_and_the_split_claims_both_names():
    result = validate([MappingRow("email", "email", 1), MappingRow("extra", "name", 6)], FIELDS)
    assert result.ok and [r.field_id for r in effective_rows(result)] == [1, 6]
    result = validate([MappingRow("email", "email", 1), MappingRow("extra", "name", None),
                       MappingRow("extra", "description", 3)], FIELDS)
    assert "Customer Name fills First Name and Last Name" in result.rows[2].error


def test_name_targets_offer_text_fields_for_the_whole_name():
    targets = name_targets(FIELDS)
    assert targets["split_id"] == 2 and targets["last_id"] == 3 and targets["label"] == "First Name + Last Name"
    assert [f.label for f in targets["whole"]] == ["Full name"]


def test_switching_to_and_from_customer_name_drops_choices_that_no_longer_mean_the_same():
    row = MappingRow("extra", "address.city", 2)
    carry_over(row, was_name=True, fields_by_id=FIELDS)
    assert row.field_id is None
    row = MappingRow("extra", "name", 5)  # Age (a number) cannot hold the whole name: the split instead
    carry_over(row, was_name=False, fields_by_id=FIELDS)
    assert row.field_id == 2
    row = MappingRow("extra", "name", 6)
    carry_over(row, was_name=False, fields_by_id=FIELDS)
    assert row.field_id == 6


def test_create_field_offers_the_types_the_stripe_field_fits():
    assert creatable_types("") == [("text", "Text"), ("number", "Number"), ("date", "Date"), ("dropdown", "Dropdown")]
    assert creatable_types("name") == [("text", "Text")]
    assert creatable_types("address.country") == [("text", "Text"), ("dropdown", "Dropdown")]
    assert creatable_types("metadata.plan") == [("text", "Text"), ("dropdown", "Dropdown")]


def test_rows_keep_their_keys_and_open_create_forms():
    form = MultiDict({"row_role": ["email", "extra", "extra"], "stripe_field": ["email", "", "phone"],
                      "crm_field": ["1", "", ""], "row_key": ["a1", "b2", "b2"], "new_label_b2": "Calls",
                      "new_type_b2": "text"})
    rows = rows_from_form(form, 1)
    assert [r.key for r in rows][:2] == ["a1", "b2"] and rows[2].key not in ("a1", "b2")  # a repeated key is renewed
    assert rows[1].new_field.label == "Calls" and rows[2].new_field is None
    assert find_row(rows, "b2") == 1 and find_row(rows, "zz") is None
