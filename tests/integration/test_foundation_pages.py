"""The foundation through Flask's client: setup, login gate, CSRF, forms that keep bad input."""
from webapp.crm import service
from webapp.crm.models import Contact


def test_first_run_sends_everyone_to_setup(client):
    for url in ("/", "/contacts", "/apps/", "/fields"):
        resp = client.get(url)
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/setup")
    resp = client.get("/setup")
    assert resp.status_code == 200 and "Create admin account" in resp.get_data(as_text=True)


def test_setup_creates_admin_once(client, db):
    client.get("/setup")
    resp = client.post("/setup", {"email": "first@example.com", "password": "longenough", "confirm": "longenough"})
    assert resp.status_code == 302
    assert client.get("/contacts").status_code == 200
    assert client.get("/setup").headers["Location"].endswith("/login")


def test_login_required_and_safe_next(client, admin):
    resp = client.get("/fields")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    client.get("/login")
    bad = client.post("/login", {"email": "admin@example.com", "password": "nope"})
    assert bad.status_code == 400 and "do not match" in bad.get_data(as_text=True)
    evil = client.post("/login?next=https://evil.example/", {"email": "admin@example.com",
                                                              "password": "correct horse battery"})
    assert evil.headers["Location"] == "/contacts"


def test_session_cookie_flags(client, admin):
    client.get("/login")
    resp = client.post("/login", {"email": "admin@example.com", "password": "correct horse battery"})
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_post_without_csrf_token_is_rejected(auth_client, db):
    resp = auth_client.raw.post("/contacts/new", data={"email": "nocsrf@example.com"})
    assert resp.status_code == 400
    assert "security token" in resp.get_data(as_text=True)
    assert db.session.query(Contact).count() == 0


def test_htmx_post_without_csrf_header_is_rejected(auth_client, db):
    c = service.save_contact(None, {"email": "x@example.com"})
    resp = auth_client.raw.post(f"/contacts/{c.id}/tags", data={"tag": "vip"}, headers={"HX-Request": "true"})
    assert resp.status_code == 400
    db.session.expire_all()
    assert c.tags == []


def test_login_is_rate_limited(client, admin, app):
    client.get("/login")
    statuses = [client.post("/login", {"email": "admin@example.com", "password": "bad"}).status_code
                for _ in range(12)]
    assert statuses[:10] == [400] * 10 and statuses[-1] == 429


def test_contact_form_keeps_input_on_errors(auth_client, db):
    service.save_contact(None, {"email": "taken@example.com"})
    auth_client.get("/contacts/new")
    resp = auth_client.post("/contacts/new", {"email": "TAKEN@example.com", "first_name": "Kept"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert "A contact with this email already exists." in html
    assert 'value="Kept"' in html and 'value="TAKEN@example.com"' in html
    resp = auth_client.post("/contacts/new", {"email": "bad@", "first_name": "Kept"})
    assert "Enter a valid email address" in resp.get_data(as_text=True)
    resp = auth_client.post("/contacts/new", {"email": ""})
    assert "Email is required." in resp.get_data(as_text=True)


def test_number_field_given_text(auth_client, db):
    age = service.create_field("Age", "number")
    auth_client.get("/contacts/new")
    resp = auth_client.post("/contacts/new", {"email": "n@example.com", f"custom_{age.id}": "old"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400 and "Age must be a number." in html and 'value="old"' in html


def test_field_name_clashing_with_standard(auth_client, db):
    auth_client.get("/fields")
    resp = auth_client.post("/fields", {"label": "First name", "type": "text"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400 and "is a standard field" in html and 'value="First name"' in html


def test_contact_search_fragment(auth_client, db):
    service.save_contact(None, {"email": "ada@example.com", "first_name": "Ada"})
    service.save_contact(None, {"email": "bob@example.com", "first_name": "Bob"})
    resp = auth_client.get("/contacts?q=ad", headers={"HX-Request": "true", "HX-Target": "contact-table"})
    html = resp.get_data(as_text=True)
    assert html.startswith('<div id="contact-table"') and "ada@example.com" in html and "bob@" not in html


def test_user_data_is_escaped(auth_client, db):
    c = service.save_contact(None, {"email": "x@example.com", "first_name": "<script>alert(1)</script>"})
    html = auth_client.get(f"/contacts/{c.id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_unknown_pages_are_friendly(auth_client):
    resp = auth_client.get("/contacts/999999")
    assert resp.status_code == 404 and "Traceback" not in resp.get_data(as_text=True)


def test_apps_search_narrows(auth_client):
    html = auth_client.get("/apps/?q=str", headers={"HX-Request": "true", "HX-Target": "app-list"}).get_data(as_text=True)
    assert "Stripe" in html
    html = auth_client.get("/apps/?q=zzz", headers={"HX-Request": "true", "HX-Target": "app-list"}).get_data(as_text=True)
    assert "No apps match" in html


def test_create_user_cli(app, db):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "cli@example.com", "--password", "longenough"])
    assert result.exit_code == 0, result.output
    from webapp.auth.service import authenticate
    assert authenticate("cli@example.com", "longenough") is not None
    again = runner.invoke(args=["create-user", "CLI@example.com", "--password", "longenough"])
    assert again.exit_code != 0 and "already exists" in again.output


def test_ids_no_column_can_hold_are_not_found(auth_client, db):
    """A URL id beyond what an id column holds is a 404 on every route, not a database error (a 500)."""
    for huge in ("2147483648", "99999999999999999999"):  # past PostgreSQL's integer; past SQLite's 64 bits
        for url in (f"/contacts/{huge}", f"/contacts/{huge}/edit", f"/apps/stripe/log/{huge}",
                    f"/apps/stripe/resources/{huge}/remove", f"/apps/stripe/accounts/{huge}/disconnect",
                    f"/automations/{huge}"):
            assert auth_client.get(url).status_code == 404, url
    assert auth_client.get("/contacts/2147483647").status_code == 404  # the largest id: looked up, not there
