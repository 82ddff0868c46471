"""Bad input at scale (hypothesis): fuzzed webhook bodies and headers, and every form's fields.
Never a 500, and nothing is stored from a body whose signature does not verify."""
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.helpers import sign
from webapp.crm import service
from webapp.stripe_sync.models import StripeEvent

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
text = st.text(st.characters(codec="utf-8"), max_size=300)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=300)  # what HTTP can carry
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                           max_leaves=12)


def stored(db):
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(StripeEvent))


@FUZZ
@given(body=st.binary(max_size=2000), signature=st.one_of(st.none(), header_text, st.builds(
    lambda t, v: f"t={t},v1={v}", st.integers(), st.text("0123456789abcdef", min_size=64, max_size=64))),
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded"]))
def test_unverified_webhook_bodies_are_rejected_and_never_stored(app, db, connect_resource, body, signature,
                                                                 content_type):
    res = connect_resource("customer") if not hasattr(app, "_fuzz_res") else app._fuzz_res
    app._fuzz_res = res
    client = app.test_client()
    headers = {"Content-Type": content_type} if content_type else {}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    for url in (res.url, "/webhooks/stripe/not-a-token", res.url + "x" * 300):
        resp = client.post(url, data=body, headers=headers)
        assert resp.status_code in (400, 404, 405, 413), resp.status_code
        assert resp.mimetype == "application/json"
    assert stored(db) == 0


@FUZZ
@given(doc=json_values)
def test_signed_bodies_that_are_not_events_are_rejected(app, db, connect_resource, doc):
    res = connect_resource("customer") if not hasattr(app, "_fuzz_res") else app._fuzz_res
    app._fuzz_res = res
    payload = json.dumps(doc).encode()
    resp = app.test_client().post(res.url, data=payload, headers={"Stripe-Signature": sign(payload, res.secrets[0]),
                                                                   "Content-Type": "application/json"})
    assert resp.status_code == 400 and stored(db) == 0


@FUZZ
@given(email=text, first=text, last=text, phone=text, custom=text, tag=text, label=text,
       type_=st.sampled_from(["text", "number", "date", "dropdown", "", "bogus"]), options=text)
def test_forms_never_answer_500(auth_client, db, email, first, last, phone, custom, tag, label, type_, options):
    number = service.custom_fields()[0] if service.custom_fields() else service.create_field("Score", "number")
    contact = service.find_contact_by_email("fuzz@example.com") or service.save_contact(None, {"email": "fuzz@example.com"})
    auth_client.get("/contacts/new")
    posts = [
        ("/contacts/new", {"email": email, "first_name": first, "last_name": last, "phone": phone,
                           f"custom_{number.id}": custom}, False),
        (f"/contacts/{contact.id}/edit", {"email": email, "first_name": first, f"custom_{number.id}": custom}, False),
        (f"/contacts/{contact.id}/tags", {"tag": tag}, True),
        ("/fields", {"label": label, "type": type_, "options": options}, False),
        (f"/fields/{number.id}/rename", {"label": label}, True),
        ("/settings/", {"email": email, "password": first}, False),
        ("/apps/stripe/connect", {"secret_key": email}, True),
        ("/apps/stripe/connect/resource", {"draft": label, "kind": type_, "sync_type": tag}, True),
        ("/apps/stripe/connect/finish", {"draft": label, "row_role": [type_], "stripe_field": [tag],
                                         "crm_field": [custom]}, True),
        (f"/contacts?q={first[:50]}", None, False),
    ]
    for url, data, htmx in posts:
        resp = auth_client.get(url) if data is None else auth_client.post(url, data, htmx=htmx)
        assert resp.status_code < 500, (url, resp.status_code)
    db.session.rollback()
    assert service.find_contact_by_email("fuzz@example.com") is not None  # nothing already stored is lost
