"""Sessions that end: a cookie saved before logout or a password change opens nothing afterwards, and
logging in starts a new session with a new CSRF secret (issue 13, finding 2)."""
from flask import g

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD


def switch_browser() -> None:
    """The tests share one app context: forget the user and CSRF token the last browser left on g."""
    for name in ("_login_user", "csrf_token"):
        g.pop(name, None)


def replay(client, cookie: str):
    """Send a saved session cookie again, as someone who copied it would (and forget the user the shared
    test app context cached on g, so the cookie alone decides)."""
    client.raw.set_cookie("session", cookie)
    switch_browser()
    return client.raw.get("/contacts")


def refused(resp) -> bool:
    """The login gate's answer: a redirect to the login page."""
    return resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_a_cookie_saved_before_logout_is_refused_after_it(auth_client):
    assert auth_client.get("/contacts").status_code == 200  # also takes the page's CSRF token
    saved = auth_client.raw.get_cookie("session").value
    assert auth_client.post("/logout").status_code == 302
    assert refused(replay(auth_client, saved))


def test_logout_ends_the_users_other_sessions_too(app, auth_client):
    from tests.conftest import Client

    switch_browser()
    other = Client(app.test_client())
    other.get("/login")
    assert other.post("/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).status_code == 302
    elsewhere = other.raw.get_cookie("session").value
    switch_browser()
    auth_client.get("/contacts")
    assert auth_client.post("/logout").status_code == 302
    assert refused(replay(other, elsewhere))


def test_a_cookie_saved_before_a_password_change_is_refused_after_it(auth_client, admin, db):
    from webapp.auth.service import change_password

    assert auth_client.get("/contacts").status_code == 200
    saved = auth_client.raw.get_cookie("session").value
    change_password(admin, "a brand new password")
    assert refused(replay(auth_client, saved))


def test_login_renews_the_session_and_its_csrf_secret(client, admin):
    client.get("/login")
    token_before = client.token
    with client.raw.session_transaction() as session:
        secret_before = session["csrf_token"]
        session["left_over"] = "from before login"
    assert client.post("/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).status_code == 302
    assert client.get("/contacts").status_code == 200
    with client.raw.session_transaction() as session:
        assert session["csrf_token"] != secret_before
        assert "left_over" not in session
    assert client.token != token_before
    stale = client.raw.post("/contacts/new", data={"email": "stale@example.com", "csrf_token": token_before})
    assert stale.status_code == 400 and "security token" in stale.get_data(as_text=True)


def test_a_cookie_from_before_the_upgrade_no_longer_opens_pages(auth_client, admin):
    """Cookies that carry only the user id (no session version) were issued before sessions could end."""
    with auth_client.raw.session_transaction() as session:
        session["_user_id"] = str(admin.id)
    switch_browser()
    assert refused(auth_client.raw.get("/contacts"))
