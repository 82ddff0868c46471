"""Issue 13, finding 10: the CSP allows only the pinned htmx file, and the "new resource" draft is made by a POST."""
import re

import pytest

from tests.helpers import HX, choose, connect, count
from webapp import htmx_script_source
from webapp.config import HTMX_CDN_URL
from webapp.stripe_sync.models import ConnectDraft, StripeAccount


@pytest.fixture
def app_config(app_config, request):
    """The usual app, with the settings a test passes through indirect parametrization."""
    return {**app_config, **getattr(request, "param", {})}


def script_src(resp) -> list[str]:
    """The sources of the script-src directive of a response's Content-Security-Policy."""
    policy = resp.headers["Content-Security-Policy"]
    [directive] = [d.split() for d in policy.split(";") if d.split() and d.split()[0] == "script-src"]
    return directive[1:]


def test_csp_names_the_pinned_htmx_file_not_the_cdn_host(client, admin):
    resp = client.get("/login")
    assert resp.status_code == 200
    assert script_src(resp) == ["'self'", HTMX_CDN_URL]
    assert "https://cdn.jsdelivr.net" not in script_src(resp)
    assert f'src="{HTMX_CDN_URL}"' in resp.get_data(as_text=True)


@pytest.mark.parametrize("app_config", [{"HTMX_URL": "https://static.example.test/js/htmx.min.js?v=2"}], indirect=True)
def test_csp_follows_an_overridden_htmx_url(client, admin):
    resp = client.get("/login")
    assert script_src(resp) == ["'self'", "https://static.example.test/js/htmx.min.js"]
    assert 'src="https://static.example.test/js/htmx.min.js?v=2"' in resp.get_data(as_text=True)


@pytest.mark.parametrize("app_config", [{"HTMX_URL": "/static/js/htmx.min.js"}], indirect=True)
def test_csp_is_self_only_for_a_same_origin_htmx_url(client, admin):
    assert script_src(client.get("/login")) == ["'self'"]


@pytest.mark.parametrize("url, source", [
    (HTMX_CDN_URL, HTMX_CDN_URL),
    ("//cdn.example.test/js/htmx;v=2,min.js?x=1#top", "cdn.example.test/js/htmx%3Bv=2%2Cmin.js"),
    ("https://user:pw@cdn.example.test:8443/htmx.js", "https://cdn.example.test:8443/htmx.js"),
    ("/static/js/htmx.min.js", ""),
])
def test_htmx_script_source_is_one_valid_csp_source(url, source):
    assert htmx_script_source(url) == source


def test_get_on_new_resource_creates_no_draft_and_calls_no_stripe(auth_client, db, stripe_double, stripe_key):
    connect(auth_client, db, stripe_key)
    account = db.session.query(StripeAccount).one()
    drafts = count(db, ConnectDraft)
    stripe_double.clear_requests()
    resp = auth_client.get(f"/apps/stripe/accounts/{account.id}/resources/new", headers=HX)
    assert resp.status_code == 405
    assert count(db, ConnectDraft) == drafts
    assert stripe_double.requests == []


def test_post_on_new_resource_with_csrf_opens_the_resource_step(auth_client, db, stripe_double, stripe_key):
    connect(auth_client, db, stripe_key)
    account = db.session.query(StripeAccount).one()
    html = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert re.search(r'hx-post="/apps/stripe/accounts/%d/resources/new"[^>]*>Connect a new resource<' % account.id, html)
    drafts = count(db, ConnectDraft)
    stripe_double.clear_requests()
    resp = auth_client.post(f"/apps/stripe/accounts/{account.id}/resources/new", htmx=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200, body
    assert count(db, ConnectDraft) == drafts + 1
    assert [r.path for r in stripe_double.requests] == ["/v1/customers"]
    draft = re.search(r'name="draft" value="([^"]+)"', body).group(1)
    assert '<option value="charge"' in body
    mapping = choose(auth_client, draft, "charge")
    assert mapping.status_code == 200 and "Finish" in mapping.get_data(as_text=True)


def test_post_on_new_resource_without_csrf_is_refused(auth_client, db, stripe_double, stripe_key):
    connect(auth_client, db, stripe_key)
    account = db.session.query(StripeAccount).one()
    drafts = count(db, ConnectDraft)
    stripe_double.clear_requests()
    resp = auth_client.raw.post(f"/apps/stripe/accounts/{account.id}/resources/new", headers=HX)
    assert resp.status_code == 400
    assert count(db, ConnectDraft) == drafts
    assert stripe_double.requests == []
