"""Bad input at scale (hypothesis): fuzzed webhook bodies and headers, and every form's fields.
Never a 500, and nothing is stored from a body whose signature does not verify."""
import json
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.fuzzing import FUZZ, header_text, numbers, text
from tests.helpers import sign
from webapp.crm import service
from webapp.stripe_sync.models import StripeEvent

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
       type_=st.sampled_from(["text", "number", "date", "dropdown", "", "bogus"]), options=text, number=numbers)
def test_forms_never_answer_500(auth_client, db, email, first, last, phone, custom, tag, label, type_, options,
                                number):
    score = service.custom_fields()[0] if service.custom_fields() else service.create_field("Score", "number")
    contact = service.find_contact_by_email("fuzz@example.com") or service.save_contact(None, {"email": "fuzz@example.com"})
    auth_client.get("/contacts/new")
    posts = [
        ("/contacts/new", {"email": email, "first_name": first, "last_name": last, "phone": phone,
                           f"custom_{score.id}": custom, f"custom_{number}": custom}, False),
        (f"/contacts/{contact.id}/edit", {"email": email, "first_name": first, f"custom_{score.id}": custom,
                                          f"custom_{number}": custom}, False),
        (f"/contacts/{contact.id}/tags", {"tag": tag}, True),
        ("/fields", {"label": label, "type": type_, "options": options}, False),
        (f"/fields/{score.id}/rename", {"label": label}, True),
        ("/settings/", {"email": email, "password": first}, False),
        ("/apps/stripe/connect", {"secret_key": email}, True),
        ("/apps/stripe/connect/resource", {"draft": label, "kind": type_, "sync_type": tag}, True),
        ("/apps/stripe/connect/finish", {"draft": label, "row_role": [type_, "extra"], "stripe_field": [tag, "name"],
                                         "crm_field": [custom, number]}, True),
        (f"/contacts?q={first[:50]}", None, False),
        (f"/contacts?{urlencode({'page': number, 'tag': number})}", None, False),
        (f"/contacts?{urlencode({'tag': number, 'q': first[:50]})}", None, False),
    ]
    for url, data, htmx in posts:
        resp = auth_client.get(url) if data is None else auth_client.post(url, data, htmx=htmx)
        assert resp.status_code < 500, (url, resp.status_code)
    db.session.rollback()
    assert service.find_contact_by_email("fuzz@example.com") is not None  # nothing already stored is lost


@FUZZ
@given(account=numbers, resource=numbers, cursor=numbers, crm_field=numbers,
       role=st.sampled_from(["email", "id", "extra"]))
def test_numbers_in_query_strings_and_mapping_forms_never_answer_500(app, db, auth_client, connect_resource,
                                                                     account, resource, cursor, crm_field, role):
    res = connect_resource("customer") if not hasattr(app, "_fuzz_res") else app._fuzz_res
    app._fuzz_res = res
    auth_client.get("/apps/stripe")
    filters = {"account": account, "resource": resource}
    log_fragment = {"HX-Request": "true", "HX-Target": "sync-log"}
    gets = [("/apps/stripe", filters, {}), ("/apps/stripe", filters, log_fragment),
            ("/apps/stripe/log/newer", {**filters, "after": cursor}, {}),
            ("/apps/stripe/log/older", {**filters, "before": cursor}, {}),
            ("/apps/stripe/mapping-row", {"row_role": role, "stripe_field": "name", "crm_field": crm_field}, {})]
    for url, args, headers in gets:
        resp = auth_client.get(url, query_string=args, headers=headers)
        assert resp.status_code < 500, (url, resp.status_code)
        db.session.rollback()
    rows = {"row_role": ["email", role, "extra"], "stripe_field": ["email", "id", "description"],
            "crm_field": [crm_field, crm_field, crm_field]}
    resp = auth_client.post(f"/apps/stripe/resources/{res.id}/mapping", rows, htmx=True)
    assert resp.status_code < 500, resp.status_code
    db.session.rollback()
