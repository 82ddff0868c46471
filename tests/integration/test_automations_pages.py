"""The Automations pages over HTTP: list, editor, trigger picker, actions, preview, runs, outbox."""
import re

from sqlalchemy import select

from tests.helpers import FAST, make_automation
from webapp.automations.models import Automation, AutomationStep, OutboxMessage
from webapp.crm.service import create_field, find_contact_by_email
from webapp.stripe_sync.models import StripeEvent


def text(resp):
    return resp.get_data(as_text=True)


def test_nav_points_at_automations_and_the_empty_list_explains(auth_client):
    html = text(auth_client.get("/contacts"))
    assert 'href="/automations/"' in html and 'href="/automations/outbox"' in html
    html = text(auth_client.get("/automations/"))
    assert "No automations yet" in html and "New automation" in html


def test_create_rename_and_delete(auth_client, db):
    modal = auth_client.get("/automations/new", headers={"HX-Request": "true"})
    assert modal.headers["HX-Retarget"] == "#modal" and 'name="name"' in text(modal)
    resp = auth_client.post("/automations/new", {"name": "   "}, htmx=True)
    assert resp.status_code == 422 and "Enter a name." in text(resp)
    resp = auth_client.post("/automations/new", {"name": "Dunning"}, htmx=True)
    automation = db.session.scalar(select(Automation))
    assert resp.status_code == 204 and resp.headers["HX-Redirect"] == f"/automations/{automation.id}"
    page = text(auth_client.get(f"/automations/{automation.id}"))
    assert "Choose trigger" in page and "No actions yet." in page and "Inactive" in page

    resp = auth_client.post(f"/automations/{automation.id}/rename", {"name": ""}, htmx=True)
    assert resp.status_code == 422 and "Enter a name." in text(resp)
    resp = auth_client.post(f"/automations/{automation.id}/rename", {"name": "Dunning v2"}, htmx=True)
    assert resp.status_code == 200 and "Saved." in text(resp)
    assert '<h1 id="automation-title" hx-swap-oob="true">Dunning v2</h1>' in text(resp)

    resp = auth_client.post(f"/automations/{automation.id}/activate", htmx=True)
    assert resp.status_code == 422 and "Choose a trigger before activating." in text(resp)

    resp = auth_client.post(f"/automations/{automation.id}/delete")
    assert resp.status_code == 302 and db.session.scalar(select(Automation)) is None
    assert "Automation “Dunning v2” deleted." in text(auth_client.get("/automations/"))


def test_forms_need_the_csrf_token(auth_client):
    resp = auth_client.raw.post("/automations/new", data={"name": "x"}, headers={"HX-Request": "true"})
    assert resp.status_code == 400 and "security token" in text(resp)


def test_trigger_picker_offers_only_what_exists(auth_client, db, connect_resource, post_event, run_worker, app):
    automation = make_automation("A", "makes_purchase", {"filter": "any"}, [], active=False)
    picker = text(auth_client.get(f"/automations/{automation.id}/trigger", headers={"HX-Request": "true"}))
    assert "CX apps" in picker and "E-commerce" in picker
    assert re.search(r'trigger/stripe_event_received"\s+hx-target="#modal"\s+disabled', picker)
    assert "Connect a Stripe resource under Apps to choose its events here." in picker
    assert "Recurring Payment Created and Recurring Payment Updated appear once at least one recurring payment " \
           "has synced from Stripe" in picker
    assert "trigger/recurring_payment_created" not in picker

    connect_resource("invoice")
    form = text(auth_client.get(f"/automations/{automation.id}/trigger/stripe_event_received"))
    offered = re.findall(r'name="event_types" value="([^"]+)"', form)
    assert offered == ["invoice.created", "invoice.updated", "invoice.payment_succeeded", "invoice.payment_failed",
                       "invoice.upcoming"]

    url = f"/automations/{automation.id}/trigger"
    resp = auth_client.post(url, {"trigger_type": "stripe_event_received"}, htmx=True)
    assert resp.status_code == 422 and "Choose at least one event type." in text(resp)
    resp = auth_client.post(url, {"trigger_type": "stripe_event_received", "event_types": "charge.succeeded"}, htmx=True)
    assert resp.status_code == 422 and "Not an event of a connected resource: charge.succeeded." in text(resp)
    resp = auth_client.post(url, {"trigger_type": "recurring_payment_updated", "status": "CANCELLED"}, htmx=True)
    assert resp.status_code == 422 and "appear once at least one recurring payment has synced" in text(resp)
    resp = auth_client.post(url, {"trigger_type": "makes_purchase", "filter": "min_amount", "min_amount": "-3"},
                            htmx=True)
    assert resp.status_code == 422 and "Enter an amount greater than 0" in text(resp)

    resp = auth_client.post(url, {"trigger_type": "stripe_event_received", "event_types": "invoice.payment_failed"},
                            htmx=True)
    assert resp.status_code == 200
    assert (resp.headers["HX-Retarget"], resp.headers["HX-Trigger"]) == ("#trigger-summary", "closeModal")
    assert "Stripe event received: invoice.payment_failed" in text(resp)

    # Once a subscription has synced, the recurring triggers are offered.
    app.config.update(FAST)
    post_event(connect_resource("subscription"), "customer.subscription.created")
    run_worker()
    picker = text(auth_client.get(f"/automations/{automation.id}/trigger"))
    assert "trigger/recurring_payment_created" in picker and "trigger/recurring_payment_updated" in picker
    assert "appear once at least one" not in picker
    resp = auth_client.post(url, {"trigger_type": "recurring_payment_updated", "status": "CANCELLED"}, htmx=True)
    assert resp.status_code == 200 and "Recurring Payment Updated: status CANCELLED" in text(resp)


def test_actions_are_added_validated_moved_and_removed(auth_client, db):
    create_field("Plan", "text")
    automation = make_automation("A", "makes_purchase", {"filter": "any"}, [], active=False)
    base = f"/automations/{automation.id}/actions"
    picker = text(auth_client.get(f"{base}/new"))
    for label in ("Add tag", "Remove tag", "Update a contact field", "Send email", "Wait", "End"):
        assert f"<strong>{label}</strong>" in picker

    editor = text(auth_client.get(f"{base}/new/send_email"))
    assert 'class="step-form email-editor"' in editor
    for token in ("%FIRSTNAME%", "%PLAN%", "%STRIPE_INVOICE_URL%", "%ECOM_LAST_ORDER_AMOUNT%"):
        assert f'data-insert-tag="{token}"' in editor

    resp = auth_client.post(base, {"kind": "send_email", "subject": "", "body": ""}, htmx=True)
    assert resp.status_code == 422 and "Enter a subject." in text(resp) and "Write the email&#39;s body." in text(resp)
    resp = auth_client.post(base, {"kind": "wait", "amount": "0", "unit": "days"}, htmx=True)
    assert resp.status_code == 422 and "Enter a whole number, 1 or more." in text(resp)
    resp = auth_client.post(base, {"kind": "send_email", "subject": "Hi %FIRSTNAME%", "body": "Hello"}, htmx=True)
    assert resp.status_code == 200 and resp.headers["HX-Retarget"] == "#steps"
    assert "Send email “Hi %FIRSTNAME%”" in text(resp)
    auth_client.post(base, {"kind": "wait", "amount": "2", "unit": "days"}, htmx=True)
    auth_client.post(base, {"kind": "add_tag", "tag": "dunned"}, htmx=True)
    steps = list(db.session.scalars(select(AutomationStep).order_by(AutomationStep.position)))
    assert [s.kind for s in steps] == ["send_email", "wait", "add_tag"]

    html = text(auth_client.post(f"{base}/{steps[2].id}/move/up", htmx=True))
    assert html.index("Add tag “dunned”") < html.index("Wait 2 days")
    resp = auth_client.post(f"{base}/{steps[0].id}", {"subject": "New subject", "body": "B"}, htmx=True)
    assert "Send email “New subject”" in text(resp)
    html = text(auth_client.post(f"{base}/{steps[1].id}/delete", htmx=True))
    assert "Wait 2 days" not in html
    db.session.expire_all()
    assert [(s.kind, s.position) for s in db.session.scalars(select(AutomationStep).order_by(AutomationStep.position))
            ] == [("send_email", 0), ("add_tag", 1)]

    resp = auth_client.post(f"/automations/{automation.id}/activate", htmx=True)
    assert resp.status_code == 200 and "Active" in text(resp) and "Deactivate" in text(resp)


def test_preview_renders_for_a_contact_and_event_and_flags_unknown_tags(auth_client, db, connect_resource,
                                                                         post_event, run_worker, app):
    app.config.update(FAST)
    post_event(connect_resource("invoice"), "invoice.payment_failed")
    run_worker()
    event = db.session.scalar(select(StripeEvent))
    ada = find_contact_by_email("ada@example.com")
    ada.first_name = "Ada <script>"
    db.session.commit()
    resp = auth_client.post("/automations/preview", {
        "subject": "Payment of %STRIPE_AMOUNT% failed", "preview_event": str(event.id), "preview_contact": "",
        "body": '<p>Hi %FIRSTNAME%, <a href="%STRIPE_INVOICE_URL%">pay here</a> %NOPE%</p>'}, htmx=True)
    html = text(resp)
    assert resp.status_code == 200
    assert "Payment of $29.00 failed" in html and "ada@example.com" in html
    assert "Unknown tag: <code>%NOPE%</code>" in html
    # The email sits in a sandboxed frame: its HTML is an attribute value, escaped once more.
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in html
    assert "Hi Ada &amp;lt;script&amp;gt;" in html and "<script>" not in html
    assert "https://invoice.stripe.com/i/acct_1Ovd2aLm3xVt9QeK/" in html
    assert "&lt;mark class=&#34;unknown-tag&#34;" in html

    resp = auth_client.post("/automations/preview", {"subject": "x", "body": "y"}, htmx=True)
    assert resp.status_code == 422 and "Choose a contact" in text(resp)


def test_outbox_runs_and_a_deleted_automation_keep_the_message(auth_client, db, connect_resource, post_event,
                                                               run_worker, app):
    app.config.update(FAST)
    resource = connect_resource("invoice")
    automation = make_automation("Dunning", "stripe_event_received", {}, [
        ("send_email", {"subject": "Card declined", "body": "Pay: %STRIPE_INVOICE_URL%"})],
        event_types=["invoice.payment_failed"])
    post_event(resource, "invoice.payment_failed")
    run_worker()
    page = text(auth_client.get("/automations/outbox"))
    assert "No SMTP_URL is configured, so emails are stored here and not sent." in page
    assert "Card declined" in page and "ada@example.com" in page and "Not sent (no SMTP_URL configured)" in page
    message = db.session.scalar(select(OutboxMessage))
    detail = text(auth_client.get(f"/automations/outbox/{message.id}"))
    assert "https://invoice.stripe.com/i/acct_1Ovd2aLm3xVt9QeK/" in detail and "Text version" in detail
    assert "run #" in detail

    editor = text(auth_client.get(f"/automations/{automation.id}"))
    assert "1 contact entered" in editor and "Completed" in editor
    run_log = text(auth_client.get(f"/automations/runs/{message.run_id}"))
    assert "Entered: Stripe event received by invoice.payment_failed." in run_log
    assert "Card declined" in run_log
    listing = text(auth_client.get("/automations/"))
    assert "Stripe event received: invoice.payment_failed" in listing

    auth_client.post(f"/automations/{automation.id}/delete")
    page = text(auth_client.get("/automations/outbox"))
    assert "Card declined" in page and "(deleted)" in page
    db.session.expire_all()
    assert db.session.scalar(select(OutboxMessage)).run_id is None
