"""Ada's story replayed through signed webhooks and a real RQ worker: which automations ran and what
each sent, exactly once, also when Stripe redelivers every event."""
from sqlalchemy import func, select

from tests.helpers import DUNNING_BODY, INVOICE_URL, STORY, count, make_automation
from webapp.automations import engine, service
from webapp.automations.models import AutomationRun, AutomationRunLog, OutboxMessage
from webapp.crm.models import TriggerFired
from webapp.crm.service import create_field, find_contact_by_email

WELCOME_BODY = ("Hi %FIRSTNAME%,\n\nThanks for buying %STRIPE_PRODUCT_NAME% (%STRIPE_AMOUNT%).\n"
                "You have ordered %ECOM_TOTAL_ORDERS% time(s) for %ECOM_TOTAL_REVENUE% in total.")
WINBACK_BODY = "Hi %FIRSTNAME% %LASTNAME%, your %STRIPE_PRODUCT_NAME% subscription is %STRIPE_SUBSCRIPTION_STATUS%. Come back?"


def three_automations():
    """The three the issue names: welcome after a purchase, dunning, win-back."""
    welcome = make_automation("Welcome", "makes_purchase", {"filter": "any"}, [
        ("add_tag", {"tag": "customer"}),
        ("send_email", {"subject": "Welcome, %FIRSTNAME%!", "body": WELCOME_BODY})])
    dunning = make_automation("Dunning", "stripe_event_received", {}, [
        ("send_email", {"subject": "Your payment failed", "body": DUNNING_BODY})],
        event_types=["invoice.payment_failed"])
    winback = make_automation("Win-back", "recurring_payment_updated", {"status": "CANCELLED"}, [
        ("remove_tag", {"tag": "customer"}),
        ("send_email", {"subject": "We miss you, %FIRSTNAME%", "body": WINBACK_BODY})])
    return welcome, dunning, winback


def messages(db):
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_ada_story_sends_welcome_dunning_and_winback_once_each(story, db, run_worker):
    # The recurring triggers are offered once a recurring payment exists: sync the first events first.
    story(STORY[:2])
    assert service.recurring_offered()
    welcome, dunning, winback = three_automations()
    story(STORY[2:])

    sent = messages(db)
    assert [(m.automation_name, m.subject, m.to_email) for m in sent] == [
        ("Welcome", "Welcome, Ada!", "ada@example.com"),
        ("Dunning", "Your payment failed", "ada@example.com"),
        ("Win-back", "We miss you, Ada", "ada@example.com"),
    ]
    welcome_msg, dunning_msg, winback_msg = sent
    assert "Thanks for buying onboarding_workshop ($450.00)." in welcome_msg.body_html
    assert "You have ordered 1 time(s) for $450.00 in total." in welcome_msg.body_text
    assert f'<a href="{INVOICE_URL.replace("?s=ap", "?s=ap")}">Update your card</a>' in dunning_msg.body_html
    assert "Your payment of $29.00 for Notebook Pro monthly failed." in dunning_msg.body_html
    assert f"Update your card ({INVOICE_URL})" in dunning_msg.body_text
    assert winback_msg.body_text == "Hi Ada Lovelace, your Notebook Pro monthly subscription is canceled. Come back?"
    assert {m.state for m in sent} == {"not_sent"}  # no SMTP_URL in tests
    assert {m.error for m in sent} == {"not sent: no SMTP_URL configured"}

    runs = list(db.session.scalars(select(AutomationRun).order_by(AutomationRun.id)))
    assert [(r.automation_id, r.event_type, r.state, r.step_index) for r in runs] == [
        (welcome.id, "checkout.session.async_payment_succeeded", "completed", 2),
        (dunning.id, "invoice.payment_failed", "completed", 1),
        (winback.id, "customer.subscription.deleted", "completed", 2),
    ]
    ada = find_contact_by_email("ada@example.com")
    assert "customer" not in {t.name for t in ada.tags}  # added by welcome, removed by win-back
    log = [line.message for line in db.session.scalars(
        select(AutomationRunLog).where(AutomationRunLog.run_id == runs[0].id).order_by(AutomationRunLog.id))]
    assert log[0].startswith("Entered: Makes a purchase by checkout.session.async_payment_succeeded ($450.00")
    assert log[1] == "Action 1 of 2: added tag “customer”."
    assert log[2] == ("Action 2 of 2: email “Welcome, Ada!” to ada@example.com stored in the outbox, "
                      "not sent (no SMTP_URL configured).")
    assert log[3] == "Completed."

    # Stripe redelivers everything: the events are recognised, nothing fires or sends again.
    story(STORY)
    # A duplicated entry job (or the sweep racing the listener) starts nothing either.
    engine.enter(list(db.session.scalars(select(TriggerFired.id))))
    run_worker()
    assert len(messages(db)) == 3 and count(db, AutomationRun) == 3
    counts = service.entered_counts()
    assert counts == {welcome.id: (1, 1), dunning.id: (1, 1), winback.id: (1, 1)}


def test_only_active_automations_and_only_triggers_after_activation(story, db):
    story(["customer.created"])
    early = make_automation("Early", "stripe_event_received", {}, [("add_tag", {"tag": "early"})],
                            event_types=["customer.created", "customer.updated"])
    make_automation("Off", "stripe_event_received", {}, [("add_tag", {"tag": "off"})],
                    event_types=["customer.updated"], active=False)
    story(["customer.created"])  # redelivered: no new firing, and it fired before activation anyway
    assert count(db, AutomationRun) == 0
    story(["customer.updated"])
    runs = list(db.session.scalars(select(AutomationRun)))
    assert [(r.automation_id, r.event_type, r.state) for r in runs] == [(early.id, "customer.updated", "completed")]
    assert {t.name for t in find_contact_by_email("ada@example.com").tags} >= {"early"}


def test_trigger_filters_pick_the_right_automations(story, db):
    story(STORY[:2])  # a recurring payment exists
    big = make_automation("Big spender", "makes_purchase", {"filter": "min_amount", "min_amount": "450"},
                          [("add_tag", {"tag": "big"})])
    make_automation("Too big", "makes_purchase", {"filter": "min_amount", "min_amount": "450.01"},
                    [("add_tag", {"tag": "too-big"})])
    workshop = make_automation("Workshop", "makes_purchase", {"filter": "product", "product_name": "WORKSHOP"},
                               [("add_tag", {"tag": "workshop"})])
    make_automation("Other product", "makes_purchase", {"filter": "product", "product_name": "ebook"},
                    [("add_tag", {"tag": "ebook"})])
    failed = make_automation("Past due", "recurring_payment_updated", {"status": "PAYMENT_FAILED"},
                             [("add_tag", {"tag": "past-due"})])
    any_update = make_automation("Any update", "recurring_payment_updated", {}, [("add_tag", {"tag": "updated"})])
    created = make_automation("Created", "recurring_payment_created", {}, [("add_tag", {"tag": "created"})])
    story(STORY[2:])
    entered = dict(db.session.execute(select(AutomationRun.automation_id, func.count())
                                      .group_by(AutomationRun.automation_id)).all())
    # trial_will_end, paused, resumed, updated (past_due), deleted: five applied subscription updates
    assert entered == {big.id: 1, workshop.id: 1, failed.id: 1, any_update.id: 5}
    assert created.id not in entered  # the subscription was created before this automation
    tags = {t.name for t in find_contact_by_email("ada@example.com").tags}
    assert {"big", "workshop", "past-due", "updated"} <= tags and not {"too-big", "ebook", "created"} & tags


def test_update_field_from_a_tag_and_end_stops_the_run(story, db):
    story(["customer.created"])
    plan = create_field("Plan", "text")
    automation = make_automation("Plan from Stripe", "stripe_event_received", {}, [
        ("update_field", {"field_id": str(plan.id), "value": "%STRIPE_PRODUCT_NAME% (%STRIPE_AMOUNT%)"}),
        ("end", {}),
        ("add_tag", {"tag": "never"})], event_types=["customer.subscription.created"])
    story(["customer.subscription.created"])
    ada = find_contact_by_email("ada@example.com")
    assert {v.field.label: v.value for v in ada.values} == {"Plan": "Notebook Pro monthly ($29.00)"}
    assert "never" not in {t.name for t in ada.tags}
    run = db.session.scalar(select(AutomationRun).where(AutomationRun.automation_id == automation.id))
    assert (run.state, run.step_index) == ("completed", 2)
    assert run.log[-1].message == "Action 2 of 3: ended by an End action."


def test_deactivation_pauses_runs_and_activation_resumes_them(story, db, run_worker):
    story(["customer.created"])
    automation = make_automation("Pausable", "stripe_event_received", {}, [
        ("add_tag", {"tag": "one"}), ("add_tag", {"tag": "two"})], event_types=["customer.updated"])
    service.deactivate(automation)
    service.activate(automation)  # activated again before the event: it enters
    story(["customer.updated"])
    run = db.session.scalar(select(AutomationRun))
    assert run.state == "completed"

    # A run caught by deactivation pauses at its next action and carries on after activation.
    run.state, run.step_index = "running", 1
    db.session.commit()
    service.deactivate(automation)
    engine.advance(run.id, run.job_id)
    db.session.refresh(run)
    assert run.state == "paused"
    service.activate(automation)
    run_worker()
    db.session.refresh(run)
    assert run.state == "completed"
    assert [line.message for line in run.log][-3:] == [
        "Resumed: the automation was activated.", "Action 2 of 2: added tag “two”.", "Completed."]


def test_a_failing_action_is_retried_then_the_run_fails_with_the_reason(story, db, monkeypatch):
    story(["customer.created"])
    automation = make_automation("Fragile", "stripe_event_received", {}, [("add_tag", {"tag": "x"})],
                                 event_types=["customer.updated"])

    def boom(*_a, **_k):
        raise RuntimeError("tag store unavailable")
    monkeypatch.setattr(engine, "add_tag", boom)
    story(["customer.updated"])
    run = db.session.scalar(select(AutomationRun).where(AutomationRun.automation_id == automation.id))
    assert (run.state, run.step_index, run.error) == ("failed", 0, "RuntimeError: tag store unavailable")
    errors = [line.message for line in run.log if line.level == "error"]
    assert errors == ["Action 1 failed: RuntimeError: tag store unavailable (will retry).",
                      "Action 1 failed: RuntimeError: tag store unavailable (will retry).",
                      "Action 1 failed: RuntimeError: tag store unavailable (gave up)."]
