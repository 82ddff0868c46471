"""Secret key checks: a wrong key is explained before Stripe is called, and never echoed back."""

import pytest

from webapp.stripe_sync.connect.keys import (
    ERROR_EMPTY,
    ERROR_MALFORMED,
    ERROR_PUBLISHABLE,
    classify_key,
    mask_key,
)

TEST_KEY = "sk_test_" + "51AbCdEfGhIjKlMnOp" + "4242"


@pytest.mark.parametrize(
    "raw, mode, kind",
    [
        (TEST_KEY, "test", "secret"),
        ("sk_live_" + "A1b2C3d4E5", "live", "secret"),
        ("rk_test_" + "Zz9" * 8, "test", "restricted"),
        ("rk_live_" + "0123456789abcdef", "live", "restricted"),
        (f"  {TEST_KEY}\n", "test", "secret"),
    ],
)
def test_valid_keys(raw, mode, kind):
    check = classify_key(raw)
    assert check.ok and check.error is None
    assert (check.mode, check.kind) == (mode, kind)
    assert check.key == raw.strip()
    assert raw.strip() not in repr(check)


@pytest.mark.parametrize("raw", ["", "   ", None, "\n\t"])
def test_empty(raw):
    check = classify_key(raw)
    assert not check.ok and check.mode is None and check.kind is None
    assert check.error == ERROR_EMPTY == "Enter your Stripe Secret Key."


def test_publishable_key_points_to_the_secret_key():
    raw = "pk_test_51AbCdEfGhIjKlMnOpQrSt"
    check = classify_key(raw)
    assert not check.ok and check.error == ERROR_PUBLISHABLE
    assert "publishable" in check.error
    assert "Developers → API keys → Secret key" in check.error
    assert raw not in check.error


@pytest.mark.parametrize(
    "raw",
    [
        "sk_test_short",  # fewer than 10 characters after the mode
        "sk_prod_0123456789abc",
        "whsec_0123456789abcdef",
        "sk_test_0123456789-abc",
        "sk_test_0123 456789abc",
        "SK_TEST_0123456789abc",
        "0123456789abcdef",
        "sk_test_x",
    ],
)
def test_malformed(raw):
    check = classify_key(raw)
    assert not check.ok and check.mode is None and check.kind is None
    assert check.error == ERROR_MALFORMED
    assert check.error.startswith("That doesn't look like a Stripe secret key")
    assert raw not in check.error


def test_mask_key():
    assert mask_key(TEST_KEY) == "sk_test_…4242"
    assert mask_key("rk_live_" + "abcdefghijklmnop9876") == "rk_live_…9876"
    assert mask_key(f" {TEST_KEY} ") == "sk_test_…4242"
    assert mask_key("") == "" and mask_key(None) == ""


def test_mask_never_reveals_much_of_a_short_or_odd_key():
    assert mask_key("sk_test_abc12") == "sk_test_…"
    assert mask_key("garbage") == "…"
    masked = mask_key("abcdefghijklmnopqrstuvwxyz")
    assert masked == "…wxyz"
