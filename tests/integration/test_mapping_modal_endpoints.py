"""The mapping rows' endpoints through Flask's client against the Stripe double: the Customer Name row needs no
CRM field, "Create field" from a row (and its bad input), and "Preview with a recent customer"."""
import re
import time

from tests.helpers import ACCOUNT_ID, HX, choose, connect, field_id, finish, start_connect
from webapp.crm import service
from webapp.crm.models import ContactField
from webapp.stripe_sync.models import StripeResource

CREATE = "/apps/stripe/mapping/create-field"
PREVIEW = "/apps/stripe/mapping/preview"


def rows_form(draft, rows, **extra):
    """The mapping form as the modal posts it: rows of (role, Stripe field, CRM field id, row key)."""
    return {"draft": draft, "row_role": [r[0] for r in rows], "stripe_field": [r[1] for r in rows],
            "crm_field": [str(r[2] or "") for r in rows], "row_key": [r[3] for r in rows], **extra}


def at_mapping(auth_client, db, key, kind="customer"):
    """A draft at the mapping step, and the Email row as the form posts it."""
    draft, _ = start_connect(auth_client, key)
    assert choose(auth_client, draft, kind).status_code == 200
    return draft, ("email", "email", field_id(db, "email"), "e1")


def test_a_customer_name_row_without_a_crm_field_is_first_plus_last_name(auth_client, db, stripe_key):
    draft, email = at_mapping(auth_client, db, stripe_key)
    row = auth_client.get("/apps/stripe/mapping-row", query_string={"row_role": "extra", "stripe_field": "name",
                                                                    "was": "plain", "row_key": "r1"}, headers=HX)
    body = row.get_data(as_text=True)
    first = field_id(db, "first_name")
    assert re.search(rf'<option value="{first}" selected>First Name \+ Last Name</option>', body)
    assert "split into First Name and Last Name" in body

    resp = finish(auth_client, draft, [email[:3], ("id", "id", ""), ("extra", "name", "")])
    assert resp.status_code == 204, resp.get_data(as_text=True)
    res = db.session.query(StripeResource).one()
    assert [(m.stripe_field, m.field.key) for m in res.mappings] == [("email", "email"), ("name", "first_name")]
    editor = auth_client.get(f"/apps/stripe/resources/{res.id}/mapping", headers=HX).get_data(as_text=True)
    assert re.search(rf'<option value="{first}" selected>First Name \+ Last Name</option>', editor)


def test_the_name_split_still_claims_first_and_last_name(auth_client, db, stripe_key):
    draft, email = at_mapping(auth_client, db, stripe_key)
    resp = finish(auth_client, draft, [email[:3], ("extra", "name", ""), ("extra", "phone", field_id(db, "last_name"))])
    assert resp.status_code == 422
    assert "“Last Name” is already filled by another row (Customer Name fills First Name and Last Name)." \
        in resp.get_data(as_text=True)


def test_leaving_customer_name_for_another_field_drops_the_split_target(auth_client, db, stripe_key):
    start_connect(auth_client, stripe_key)
    first = field_id(db, "first_name")
    body = auth_client.get("/apps/stripe/mapping-row", headers=HX, query_string={
        "row_role": "extra", "stripe_field": "address.city", "crm_field": str(first), "was": "name"}).get_data(as_text=True)
    assert '<option value="" selected' not in body and f'<option value="{first}" selected' not in body


def test_create_field_selects_it_in_its_row_and_lists_it_everywhere(auth_client, db, stripe_key):
    draft, email = at_mapping(auth_client, db, stripe_key)
    rows = [email, ("id", "id", "", "i1"), ("extra", "metadata.plan_tier", "", "r1")]
    resp = auth_client.post(CREATE, rows_form(draft, rows, create_row="r1", new_label_r1="Plan", new_type_r1="text",
                                              meta=["plan_tier"]), htmx=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200, body
    plan = db.session.query(ContactField).filter_by(label="Plan").one()
    assert plan.type == "text"
    assert body.count(f'<option value="{plan.id}"') == 2  # the ID row's select lists it too
    assert re.search(rf'<option value="{plan.id}" selected>Plan</option>', body)
    assert 'value="metadata.plan_tier" selected' in body and 'name="new_label_r1"' not in body


def test_create_field_errors_stay_in_the_row(auth_client, db, stripe_key):
    service.create_field("Plan", "text")
    draft, email = at_mapping(auth_client, db, stripe_key)
    rows = [email, ("id", "id", field_id(db, "last_name"), "i1"), ("extra", "phone", "", "r1")]
    taken = auth_client.post(CREATE, rows_form(draft, rows, create_row="r1", new_label_r1="plan", new_type_r1="text"),
                             htmx=True)
    body = taken.get_data(as_text=True)
    assert taken.status_code == 409 and "A field named “Plan” already exists." in body
    assert 'name="new_label_r1" value="plan"' in body  # the typed name stays for correction
    assert re.search(rf'<option value="{field_id(db, "last_name")}" selected>Last Name</option>', body)  # kept

    empty = auth_client.post(CREATE, rows_form(draft, rows, create_row="r1", new_label_r1="  ", new_type_r1="text"),
                             htmx=True)
    assert empty.status_code == 422 and "Enter a field name." in empty.get_data(as_text=True)

    wrong_type = auth_client.post(CREATE, rows_form(draft, rows, create_row="r1", new_label_r1="Calls",
                                                    new_type_r1="number"), htmx=True)
    assert wrong_type.status_code == 422 and "Choose a type that can hold Customer Phone." in wrong_type.get_data(
        as_text=True)

    gone = auth_client.post(CREATE, rows_form(draft, rows, create_row="nope", new_label_r1="Calls"), htmx=True)
    assert gone.status_code == 422 and "That mapping row is no longer there" in gone.get_data(as_text=True)
    email_row = auth_client.post(CREATE, rows_form(draft, rows, create_row="e1", new_label_e1="Calls"), htmx=True)
    assert email_row.status_code == 422
    assert db.session.query(ContactField).filter_by(label="Calls").count() == 0


def test_create_field_and_preview_refuse_a_post_without_the_csrf_token(auth_client, db, stripe_key):
    draft, email = at_mapping(auth_client, db, stripe_key)
    form = rows_form(draft, [email], create_row="e1")
    for url in (CREATE, PREVIEW):
        resp = auth_client.raw.post(url, data=form, headers=HX)
        assert resp.status_code == 400 and "security token" in resp.get_data(as_text=True)


def test_preview_shows_the_newest_customer_split_and_what_would_not_fit(auth_client, db, stripe_double, stripe_key):
    stripe_double.add_customer(ACCOUNT_ID, email="grace.newest@example.com", name="Grace Brewster Hopper",
                               address={"city": "London"}, created=int(time.time()) + 60)
    zip_code = service.create_field("Zip", "number")
    draft, email = at_mapping(auth_client, db, stripe_key)
    rows = [email, ("id", "id", "", "i1"), ("extra", "name", "", "r1"), ("extra", "address.city", zip_code.id, "r2"),
            ("extra", "phone", field_id(db, "phone"), "r3")]
    stripe_double.clear_requests()
    resp = auth_client.post(PREVIEW, rows_form(draft, rows), htmx=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200, body
    assert len([r for r in stripe_double.requests if r.path.startswith("/v1/")]) == 1
    assert "grace.newest@example.com" in body and "“Grace”" in body and "“Brewster Hopper”" in body
    assert "would be left out: “London” is not a number" in body
    assert "Stripe has no Customer Phone for this customer" in body
    assert db.session.query(StripeResource).count() == 0


def test_preview_of_a_charge_resource_uses_the_expanded_customer(auth_client, db, stripe_double, stripe_key):
    stripe_double.generate_charges(ACCOUNT_ID, 2)
    draft, email = at_mapping(auth_client, db, stripe_key, kind="charge")
    stripe_double.clear_requests()
    body = auth_client.post(PREVIEW, rows_form(draft, [email, ("extra", "name", "", "r1")]), htmx=True).get_data(
        as_text=True)
    [request] = [r for r in stripe_double.requests if r.path.startswith("/v1/")]
    assert request.path == "/v1/charges" and request.params.get("limit") == "1"
    assert request.params.get("expand") == ["data.customer"], request.params
    assert "The customer of the newest charge" in body and "“Customer”" in body


def test_preview_without_customers_and_when_stripe_fails(auth_client, db, stripe_double):
    account = stripe_double.add_account(email="empty@shop.test", business_name="Empty Shop")
    key = stripe_double.add_secret_key(account["id"])
    draft, email = at_mapping(auth_client, db, key)
    body = auth_client.post(PREVIEW, rows_form(draft, [email]), htmx=True).get_data(as_text=True)
    assert "No customers in this Stripe account yet." in body

    stripe_double.fail_next(1, status=429, path_prefix="/v1/customers")
    resp = auth_client.post(PREVIEW, rows_form(draft, [email]), htmx=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Stripe is rate limiting requests right now" in body and key not in body
    stripe_double.fail_next(1, status=500, path_prefix="/v1/customers")
    assert "Stripe answered with an error" in auth_client.post(PREVIEW, rows_form(draft, [email]), htmx=True).get_data(
        as_text=True)
    stripe_double.revoke_key(key)
    body = auth_client.post(PREVIEW, rows_form(draft, [email]), htmx=True).get_data(as_text=True)
    assert "Stripe rejected this key" in body and key not in body


def test_preview_for_a_connected_resource_and_bad_targets(auth_client, db, stripe_key):
    res = connect(auth_client, db, stripe_key)
    auth_client.get("/apps/stripe")
    form = {"resource": str(res.id), "row_role": ["email", "extra"], "stripe_field": ["email", "name"],
            "crm_field": [str(field_id(db, "email")), str(field_id(db, "first_name"))]}
    body = auth_client.post(PREVIEW, form, htmx=True).get_data(as_text=True)
    assert "The newest customer in this Stripe account" in body and "First Name" in body
    assert auth_client.post(PREVIEW, {**form, "resource": "99999"}, htmx=True).status_code == 404
    assert auth_client.post(PREVIEW, {**form, "resource": "x"}, htmx=True).status_code == 404
    del form["resource"]
    assert auth_client.post(PREVIEW, {**form, "draft": "gone"}, htmx=True).status_code == 410
