"""Big forms over HTTP (issue 13, finding 7): a dropdown with 100,000 options and a mapping with
5,000 rows are refused quickly with a clear message and the form shown again, never a 500."""
import time

from tests.helpers import choose, field_id, start_connect
from webapp.crm import service

MAPPING_MESSAGE = "At most 100 field mappings per resource; remove some rows."


def test_a_dropdown_with_100000_options_is_refused_quickly(auth_client, db):
    auth_client.get("/fields")
    options = "\n".join(str(i) for i in range(100_000))
    started = time.process_time()
    resp = auth_client.post("/fields", {"label": "Plan", "type": "dropdown", "options": options})
    assert time.process_time() - started < 1.0
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert "A dropdown has at most 500 options." in html and 'name="label"' in html
    assert service.custom_fields() == []
    resp = auth_client.post("/fields", {"label": "Plan", "type": "dropdown", "options": "x" * 201})
    assert resp.status_code == 400 and "Each option is at most 200 characters." in resp.get_data(as_text=True)
    resp = auth_client.post("/fields", {"label": "Plan", "type": "dropdown", "options": "Free\nPro\nFree"})
    assert resp.status_code == 302 and service.custom_fields()[0].options == ["Free", "Pro"]


def many_rows(db, n=5000):
    """n mapping rows as the form posts them: Email first, then rows for the description."""
    return {"row_role": ["email"] + ["extra"] * (n - 1), "stripe_field": ["email"] + ["description"] * (n - 1),
            "crm_field": [str(field_id(db, "email"))] + [str(field_id(db, "phone"))] * (n - 1)}


def test_the_mapping_editor_refuses_5000_rows_with_a_message(auth_client, db, connect_resource):
    res = connect_resource("customer")
    auth_client.get("/apps/stripe")
    resp = auth_client.post(f"/apps/stripe/resources/{res.id}/mapping", many_rows(db), htmx=True)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and MAPPING_MESSAGE in html
    assert len(resp.data) < 1_000_000
    db.session.expire_all()
    assert [m.stripe_field for m in res_mappings(db, res.id)] == ["email", "name"]


def res_mappings(db, resource_id):
    """The stored mapping of a resource, in order."""
    from webapp.stripe_sync.models import StripeResource

    return db.session.get(StripeResource, resource_id).mappings


def test_the_connect_flow_refuses_5000_rows_with_a_message(auth_client, db, stripe_key):
    from webapp.stripe_sync.models import StripeResource

    draft, _ = start_connect(auth_client, stripe_key)
    assert choose(auth_client, draft).status_code == 200
    resp = auth_client.post("/apps/stripe/connect/finish", {"draft": draft, **many_rows(db)}, htmx=True)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and MAPPING_MESSAGE in html and f'value="{draft}"' in html
    assert len(resp.data) < 1_000_000
    assert db.session.query(StripeResource).count() == 0
