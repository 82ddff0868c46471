"""Sessions that end, proxy settings, and a login whose time says nothing about which emails have
accounts (issue 13, findings 2, 3 and 5)."""
import time
from datetime import timedelta

import pytest

from webapp import config
from webapp.auth.service import authenticate, create_user
from webapp.crm.service import ValidationError


def test_login_time_does_not_reveal_which_emails_have_accounts(db):
    create_user("known@example.com", "a long password")
    authenticate("known@example.com", "warm up")
    authenticate("nobody@example.com", "warm up")

    def quickest(email):
        """The fastest of a few refused logins: the least a refusal for this email costs."""
        times = []
        for _ in range(3):
            start = time.perf_counter()
            assert authenticate(email, "wrong password") is None
            times.append(time.perf_counter() - start)
        return min(times)

    known, unknown = quickest("known@example.com"), quickest("nobody@example.com")
    assert unknown > known / 3, (known, unknown)


def test_changing_a_password_ends_earlier_sessions(db):
    from webapp.auth.service import change_password

    user = create_user("boss@example.com", "the old password")
    before = user.get_id()
    change_password(user, "the new password")
    assert user.get_id() != before
    assert authenticate("boss@example.com", "the old password") is None
    assert authenticate("boss@example.com", "the new password") == user
    with pytest.raises(ValidationError) as exc:
        change_password(user, "short")
    assert "8 characters" in exc.value.errors["password"]


def test_set_password_command(app, db):
    user = create_user("cli@example.com", "the old password")
    before = user.get_id()
    result = app.test_cli_runner().invoke(args=["set-password", "CLI@example.com", "--password", "the new password"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert authenticate("cli@example.com", "the new password") is not None and user.get_id() != before
    result = app.test_cli_runner().invoke(args=["set-password", "nobody@example.com", "--password", "long enough"])
    assert result.exit_code != 0 and "No user" in result.output


def test_session_lifetime_and_trusted_proxies_from_the_environment(monkeypatch):
    monkeypatch.delenv("SESSION_LIFETIME_DAYS", raising=False)
    monkeypatch.delenv("TRUSTED_PROXIES", raising=False)
    cfg = config.build({"PUBLIC_BASE_URL": None})
    assert cfg["PERMANENT_SESSION_LIFETIME"] == timedelta(days=7) and cfg["TRUSTED_PROXIES"] == 0
    assert cfg["SESSION_COOKIE_SECURE"] is False and cfg["REMEMBER_COOKIE_SECURE"] is False
    monkeypatch.setenv("SESSION_LIFETIME_DAYS", "0.5")
    monkeypatch.setenv("TRUSTED_PROXIES", "2")
    cfg = config.build({"PUBLIC_BASE_URL": "https://crm.example.test"})
    assert cfg["PERMANENT_SESSION_LIFETIME"] == timedelta(hours=12) and cfg["TRUSTED_PROXIES"] == 2
    assert cfg["SESSION_COOKIE_SECURE"] is True and cfg["REMEMBER_COOKIE_SECURE"] is True
