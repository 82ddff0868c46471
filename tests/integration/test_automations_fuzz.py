"""Every Automations form with fuzzed text (hypothesis): a 4xx or a success, never a 500."""
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import FUZZ, numbers, text
from tests.helpers import make_automation


@FUZZ
@given(name=text, tag=text, subject=text, body=text, amount=text, unit=text, product=text, value=text,
       kind=st.sampled_from(["add_tag", "remove_tag", "update_field", "send_email", "wait", "end", "", "bogus"]),
       trigger=st.sampled_from(["stripe_event_received", "makes_purchase", "recurring_payment_updated", "", "x"]),
       field_id=numbers, contact_id=numbers, event_id=numbers, before=numbers)
def test_automation_forms_never_answer_500(auth_client, db, name, tag, subject, body, amount, unit, product, value,
                                           kind, trigger, field_id, contact_id, event_id, before):
    from webapp.automations.models import Automation

    automation = db.session.query(Automation).order_by(Automation.id).first() or make_automation(
        "Fuzz", "makes_purchase", {"filter": "any"}, [("add_tag", {"tag": "t"})], active=False)
    base = f"/automations/{automation.id}"
    posts = [
        ("/automations/new", {"name": name}),
        (f"{base}/rename", {"name": name}),
        (f"{base}/trigger", {"trigger_type": trigger, "event_types": [tag], "filter": unit, "product_name": product,
                             "min_amount": amount, "status": value}),
        (f"{base}/actions", {"kind": kind, "tag": tag, "subject": subject, "body": body, "amount": amount,
                             "unit": unit, "field_id": field_id, "value": value}),
        (f"{base}/actions", {"kind": "update_field", "field_id": field_id, "value": value}),
        (f"{base}/actions/{automation.steps[0].id}", {"tag": tag}),
        ("/automations/preview", {"subject": subject, "body": body, "preview_contact": contact_id,
                                  "preview_event": event_id}),
        ("/automations/preview", {"subject": subject, "body": body, "preview_contact": amount,
                                  "preview_event": value}),
    ]
    for url, data in posts:
        resp = auth_client.post(url, data, htmx=True)
        assert resp.status_code < 500, (url, resp.status_code)
    for headers in ({}, {"HX-Request": "true"}):
        resp = auth_client.get("/automations/outbox", query_string={"before": before}, headers=headers)
        assert resp.status_code < 500, ("/automations/outbox", resp.status_code)
    db.session.rollback()
