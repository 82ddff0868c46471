"""Crafted numbers in query strings and forms (issue 13, finding 6): digits `int()` refuses ("²") or
reads although they are not ASCII ("١٢"), values past what an id column holds on PostgreSQL (2**31)
and on SQLite (2**63), and a string past Python's 4,300-digit conversion limit. Each listed URL and
form treats them as absent (or answers a 4xx), never a 500, on SQLite and on PostgreSQL."""
import re

from tests.helpers import HX, choose, field_id, finish, make_automation, start_connect
from webapp.crm import service

CRAFTED = ["²", "١٢", "０", str(2 ** 31), str(2 ** 63 + 1), str(2 ** 64), "9" * 5000]


def answers(db, request, values=CRAFTED) -> dict:
    """The status each crafted value gets; an exception the app let through is written as a 500."""
    found = {}
    for value in values:
        try:
            found[value[:24]] = request(value).status_code
        except Exception as exc:  # noqa: BLE001 - TESTING propagates what would be a 500
            found[value[:24]] = f"500 {type(exc).__name__}: {str(exc)[:80]}"
        db.session.rollback()
    return found


def assert_all(found: dict, allowed: set) -> None:
    """Every crafted value got one of the allowed answers."""
    wrong = {value: status for value, status in found.items() if status not in allowed}
    assert wrong == {}, wrong


def test_contact_list_page_and_tag(auth_client, db):
    service.add_tag(service.save_contact(None, {"email": "ada@example.com"}), "VIP")
    db.session.commit()
    for name in ("page", "tag"):
        assert_all(answers(db, lambda v: auth_client.get("/contacts", query_string={name: v})), {200})
        assert_all(answers(db, lambda v: auth_client.get(
            "/contacts", query_string={name: v}, headers={**HX, "HX-Target": "contact-table"})), {200})


def test_new_and_edited_contacts_ignore_a_crafted_custom_field_name(auth_client, db):
    score = service.create_field("Score", "number")
    ada = service.save_contact(None, {"email": "ada@example.com"})
    auth_client.get("/contacts/new")
    emails = iter(f"c{i}@example.com" for i in range(100))
    assert_all(answers(db, lambda v: auth_client.post(
        "/contacts/new", {"email": next(emails), f"custom_{v}": "1", f"custom_{score.id}": "7"})), {302})
    assert_all(answers(db, lambda v: auth_client.post(
        f"/contacts/{ada.id}/edit", {"email": "ada@example.com", f"custom_{v}": "1"})), {302})
    assert service.custom_values(service.find_contact_by_email("c0@example.com")) == {score.id: "7"}


def test_sync_log_filters_and_cursors(auth_client, db, connect_resource):
    connect_resource("customer")
    for name in ("account", "resource"):
        assert_all(answers(db, lambda v: auth_client.get("/apps/stripe", query_string={name: v})), {200})
        assert_all(answers(db, lambda v: auth_client.get(
            "/apps/stripe", query_string={name: v}, headers={**HX, "HX-Target": "sync-log"})), {200})
        assert_all(answers(db, lambda v: auth_client.get(
            "/apps/stripe/log/newer", query_string={name: v, "after": "0"})), {200, 204})
        assert_all(answers(db, lambda v: auth_client.get(
            "/apps/stripe/log/older", query_string={name: v, "before": "5"})), {200})
    assert_all(answers(db, lambda v: auth_client.get("/apps/stripe/log/newer", query_string={"after": v})),
               {200, 204})
    assert_all(answers(db, lambda v: auth_client.get("/apps/stripe/log/older", query_string={"before": v})), {400})


def test_a_mapping_row_with_a_crafted_crm_field(auth_client, db):
    for role in ("extra", "id", "email"):
        assert_all(answers(db, lambda v: auth_client.get(
            "/apps/stripe/mapping-row", query_string={"row_role": role, "stripe_field": "name", "crm_field": v})),
                   {200})


def test_saving_a_mapping_with_a_crafted_crm_field(auth_client, db, connect_resource):
    res = connect_resource("customer")
    auth_client.get("/apps/stripe")

    def save(value):
        rows = {"row_role": ["email", "id", "extra"], "stripe_field": ["email", "id", "name"],
                "crm_field": [str(field_id(db, "email")), value, value]}
        resp = auth_client.post(f"/apps/stripe/resources/{res.id}/mapping", rows, htmx=True)
        assert resp.status_code != 422 or "Choose both a Stripe field and a CRM field" in resp.get_data(as_text=True)
        return resp

    assert_all(answers(db, save), {422})


def test_finishing_the_connect_flow_with_a_crafted_crm_field(auth_client, db, stripe_key):
    draft, _ = start_connect(auth_client, stripe_key)
    assert choose(auth_client, draft).status_code == 200
    assert_all(answers(db, lambda v: finish(auth_client, draft, [("email", "email", field_id(db, "email")),
                                                                   ("extra", "name", v)])), {422})


def test_outbox_pages_and_the_email_preview(auth_client, db):
    auth_client.get("/automations/")
    assert_all(answers(db, lambda v: auth_client.get("/automations/outbox", query_string={"before": v})), {200})
    assert_all(answers(db, lambda v: auth_client.get(
        "/automations/outbox", query_string={"before": v}, headers=HX)), {200})
    for name in ("preview_contact", "preview_event"):
        assert_all(answers(db, lambda v: auth_client.post(
            "/automations/preview", {"subject": "Hi", "body": "there", name: v}, htmx=True)), {422})


def test_a_field_update_action_with_a_crafted_field_id(auth_client, db):
    automation = make_automation("Numbers", "makes_purchase", {"filter": "any"},
                                 [("update_field", {"field_id": str(field_id(db, "phone")), "value": "1"})],
                                 active=False)
    step_id = automation.steps[0].id
    auth_client.get(f"/automations/{automation.id}")

    def post(url, value):
        resp = auth_client.post(url, {"kind": "update_field", "field_id": value, "value": "x"}, htmx=True)
        assert resp.status_code != 422 or re.search("Choose a field", resp.get_data(as_text=True))
        return resp

    assert_all(answers(db, lambda v: post(f"/automations/{automation.id}/actions", v)), {422})
    assert_all(answers(db, lambda v: post(f"/automations/{automation.id}/actions/{step_id}", v)), {422})
    for value in (str(2 ** 31 - 1), "0", "1" * 18):  # what a column holds, or not: never a 500
        assert_all(answers(db, lambda v: post(f"/automations/{automation.id}/actions", v), [value]), {422})


def test_path_ids_take_ascii_digits_only(auth_client, db):
    """Werkzeug's int converter matches any Unicode digit: "/contacts/١٢" must not open contact 12."""
    ada = service.save_contact(None, {"email": "ada@example.com"})
    db.session.commit()
    assert auth_client.get(f"/contacts/{ada.id}").status_code == 200
    arabic = "".join(chr(0x660 + int(d)) for d in str(ada.id))
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in str(ada.id))
    assert auth_client.get(f"/contacts/{arabic}").status_code == 404
    assert auth_client.get(f"/contacts/{fullwidth}").status_code == 404
