"""Behind one trusted TLS proxy (issue 13, findings 3 and 4): the app sees each client's address and
scheme, sends Secure cookies and HSTS, and limits failed logins per address and per account, so one
attacker cannot lock every admin out and successful logins never count."""
import pytest
from flask import g

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Client

SECOND_EMAIL = "second@example.com"
SECOND_PASSWORD = "another long password"


@pytest.fixture
def app_config(app_config):
    """Every request below reaches the app through one proxy (the test client's 127.0.0.1)."""
    return {**app_config, "TRUSTED_PROXIES": 1, "PUBLIC_BASE_URL": "https://crm.example.test"}


@pytest.fixture
def second(admin):
    """Another admin, who must still get in while someone guesses the first one's password."""
    from webapp.auth.service import create_user
    return create_user(SECOND_EMAIL, SECOND_PASSWORD)


def via(address: str) -> dict:
    """The headers our TLS proxy adds for a client at this address (and the same-origin Referer a browser
    sends, which Flask-WTF requires of every POST over HTTPS)."""
    return {"X-Forwarded-For": address, "X-Forwarded-Proto": "https", "Referer": "https://localhost/login"}


def browser(app) -> Client:
    """A fresh browser; the tests' shared app context must forget what the last one left on g."""
    for name in ("_login_user", "csrf_token"):
        g.pop(name, None)
    return Client(app.test_client())


def attempt(app, email: str, password: str, address: str):
    """One login through the form by a fresh browser at this address."""
    c = browser(app)
    c.get("/login", headers=via(address))
    return c.post("/login", {"email": email, "password": password}, headers=via(address))


def test_https_through_the_proxy_gets_a_secure_cookie_and_hsts(app, admin):
    c = browser(app)
    page = c.get("/login", headers=via("203.0.113.7"))
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    resp = c.post("/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, headers=via("203.0.113.7"))
    assert resp.status_code == 302
    cookie = resp.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    plain = app.test_client().get("/login")  # not through the proxy: plain HTTP, so no HSTS
    assert "Strict-Transport-Security" not in plain.headers


def test_the_limiter_counts_the_forwarded_address(app, admin):
    statuses = [attempt(app, f"guess{i}@example.com", "wrong password", "203.0.113.7").status_code
                for i in range(11)]
    assert statuses == [400] * 10 + [429]
    assert attempt(app, "guess99@example.com", "wrong password", "198.51.100.2").status_code == 400


def test_failed_logins_for_one_account_do_not_lock_out_another(app, admin, second):
    for _ in range(10):
        assert attempt(app, ADMIN_EMAIL, "wrong password", "203.0.113.7").status_code == 400
    assert attempt(app, SECOND_EMAIL, SECOND_PASSWORD, "198.51.100.2").status_code == 302


def test_failed_logins_count_per_account_from_any_address(app, admin, second):
    for i in range(10):
        assert attempt(app, ADMIN_EMAIL, "wrong password", f"203.0.113.{i + 1}").status_code == 400
    assert attempt(app, " Admin@Example.com ", "wrong password", "198.51.100.9").status_code == 429
    assert attempt(app, SECOND_EMAIL, SECOND_PASSWORD, "198.51.100.10").status_code == 302


def test_successful_logins_do_not_count(app, admin):
    for _ in range(12):
        assert attempt(app, ADMIN_EMAIL, ADMIN_PASSWORD, "203.0.113.7").status_code == 302
    assert attempt(app, ADMIN_EMAIL, "wrong password", "203.0.113.7").status_code == 400
