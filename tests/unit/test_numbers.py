"""The one parser for ids and page numbers from URLs and forms (issue 13, finding 6): ASCII digits
only, within what an id column holds on both databases, never converting a thousands-digit string."""
import time

import pytest
from werkzeug.routing import Map

from webapp import IdConverter
from webapp.automations.steps import row_id
from webapp.numbers import MAX_ID, whole_number


@pytest.mark.parametrize("raw, expected", [
    ("1", 1), ("42", 42), (" 7 ", 7), ("007", 7), (str(MAX_ID), MAX_ID), (12, 12), ("0" * 5000 + "3", 3),
])
def test_ascii_digits_within_an_id_column_are_numbers(raw, expected):
    assert whole_number(raw) == expected


@pytest.mark.parametrize("raw", [
    None, "", " ", "abc", "-1", "+1", "1.0", "1e3", "1_000", "0x10", "1 2",
    "²", "¹²", "١٢", "١٢٣", "０", "１２", "٣", "৩", "𝟙",  # str.isdigit() says yes to all of these
    str(MAX_ID + 1), str(2 ** 31), str(2 ** 63), str(2 ** 63 + 1), str(2 ** 64), "9" * 5000, "1" * 100_000,
])
def test_anything_else_is_absent(raw):
    assert whole_number(raw) is None


def test_zero_is_absent_unless_the_caller_allows_it():
    assert whole_number("0") is None
    assert whole_number("0", minimum=0) == 0
    assert whole_number("000", minimum=0) == 0
    assert whole_number("", minimum=0) is None


def test_a_huge_string_is_refused_before_any_conversion():
    started = time.process_time()
    for _ in range(100):
        assert whole_number("7" * 1_000_000) is None
    assert time.process_time() - started < 1.0


def test_path_ids_and_form_ids_share_one_bound():
    assert MAX_ID == 2 ** 31 - 1
    assert IdConverter(Map()).max == MAX_ID


def test_an_action_row_id_holds_no_more_than_an_id_column():
    assert row_id(str(MAX_ID)) == MAX_ID
    assert row_id(" 12 ") == 12 and row_id("0") == 0
    for raw in (str(MAX_ID + 1), "1" * 18, "²", "١٢", "9" * 5000, None):
        assert row_id(raw) is None
