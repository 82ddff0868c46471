"""Users: hashing, uniqueness and the post-login redirect guard."""
import pytest

from webapp.auth.service import authenticate, create_user, has_users, safe_next
from webapp.crm.service import ValidationError


def test_create_and_authenticate(db):
    assert not has_users()
    user = create_user("Boss@Example.com", "s3cret-pass")
    assert has_users()
    assert "s3cret-pass" not in user.password_hash
    assert authenticate("boss@example.com", "s3cret-pass") == user
    assert authenticate("boss@example.com", "wrong") is None
    with pytest.raises(ValidationError):
        create_user("BOSS@example.com", "another-pass")


def test_short_password_rejected(db):
    with pytest.raises(ValidationError) as exc:
        create_user("a@example.com", "short")
    assert "8 characters" in exc.value.errors["password"]


@pytest.mark.parametrize("target,expected", [
    ("/contacts?page=2", "/contacts?page=2"),
    ("https://evil.example/", None),
    ("//evil.example/", None),
    ("/\\evil.example", None),
    ("javascript:alert(1)", None),
    ("", None),
])
def test_safe_next(target, expected):
    assert safe_next(target) == expected
