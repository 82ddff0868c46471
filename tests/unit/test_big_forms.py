"""Big forms cost little (issue 13, finding 7): dropdown options and mapping rows are capped with a
clear message, and options are de-duplicated in linear time."""
import time
from types import SimpleNamespace

import pytest

from webapp.crm import service
from webapp.stripe_sync.connect.mapping import MAX_MAPPING_ROWS, MappingRow, rows_from_form, validate


def cpu_seconds(fn):
    """CPU time one call takes, and what it returned or raised."""
    started = time.process_time()
    try:
        outcome = fn()
    except Exception as exc:  # noqa: BLE001 - the caller inspects it
        outcome = exc
    return time.process_time() - started, outcome


def test_a_dropdown_with_100000_options_is_refused_quickly(db):
    spent, outcome = cpu_seconds(lambda: service.create_field(
        "Plan", "dropdown", "\n".join(f"option {i}" for i in range(100_000))))
    assert isinstance(outcome, service.ValidationError), outcome
    assert outcome.errors == {"options": f"A dropdown has at most {service.MAX_OPTIONS} options."}
    assert spent < 1.0
    assert service.custom_fields() == []


def test_many_repeats_of_few_options_are_deduplicated_in_linear_time():
    raw = "\n".join(f"option {i % service.MAX_OPTIONS}" for i in range(200_000))
    spent, options = cpu_seconds(lambda: service.parse_options(raw))
    assert options == [f"option {i}" for i in range(service.MAX_OPTIONS)]
    assert spent < 0.5


def test_option_caps_and_order(db):
    assert service.MAX_OPTIONS == 500 and service.MAX_OPTION_LENGTH == 200
    assert service.parse_options(" Free \n\nPro\nFree\r\nTeam") == ["Free", "Pro", "Team"]
    assert len(service.parse_options("\n".join(str(i) for i in range(500)))) == 500
    with pytest.raises(service.ValidationError) as exc:
        service.parse_options("\n".join(str(i) for i in range(501)))
    assert exc.value.errors == {"options": "A dropdown has at most 500 options."}
    assert service.parse_options("x" * 200) == ["x" * 200]
    with pytest.raises(service.ValidationError) as exc:
        service.create_field("Plan", "dropdown", "Free\n" + "x" * 201)
    assert exc.value.errors == {"options": "Each option is at most 200 characters."}
    field = service.create_field("Plan", "dropdown", "Free\nPro\nPro\n")
    assert field.options == ["Free", "Pro"]
    assert service.create_field("Notes", "text", "\n".join(str(i) for i in range(1000))).options is None


class Form(dict):
    def getlist(self, key):
        return self.get(key, [])


FIELDS = {i: SimpleNamespace(id=i, key=k, label=k, type="email" if k == "email" else "text")
          for i, k in enumerate(["email"] + [f"custom_{n}" for n in range(2, 200)], start=1)}


def test_too_many_mapping_rows_are_refused_with_a_message():
    assert MAX_MAPPING_ROWS == 100
    n = 5000
    form = Form(row_role=["email"] + ["extra"] * (n - 1), stripe_field=["email"] + ["description"] * (n - 1),
                crm_field=["1"] + [str(i % 190 + 2) for i in range(n - 1)])
    spent, rows = cpu_seconds(lambda: rows_from_form(form, email_field_id=1))
    assert len(rows) == MAX_MAPPING_ROWS + 1 and spent < 0.5
    result = validate(rows, FIELDS)
    assert not result.ok
    assert result.general == ["At most 100 field mappings per resource; remove some rows."]


def test_a_hundred_rows_still_validate_row_by_row():
    rows = [MappingRow("email", "email", 1)] + [MappingRow("extra", "description", i + 2) for i in range(99)]
    assert validate(rows, FIELDS).ok
    rows.append(MappingRow("extra", "", None))
    assert validate(rows, FIELDS).general == ["At most 100 field mappings per resource; remove some rows."]
