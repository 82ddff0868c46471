"""Runs: contacts entering automations when triggers fire, and their actions running in order.

Entering (`enter`, the job the trigger listener enqueues): for each fired trigger, record that it
was checked and create one run per active automation it matches, all in one transaction. A run is
unique per (automation, fired trigger) and a check row per fired trigger, so a retried or
duplicated job, or the sweep racing the listener, creates nothing twice. Triggers that fired before
an automation was (last) activated do not enter it.

Advancing (`advance`, one job per run segment): each action runs in its own transaction that
starts by claiming the run (`UPDATE ... WHERE job_id = token AND step_index = i`) and moves
`step_index` past the action together with the action's effect (tag, field, outbox row) and its
log line. A retried job resumes after the last committed action; a stale job (the sweep gave the
run a new token) claims nothing and stops. A wait commits state "waiting" with `next_run_at` and a
new token, then schedules the continuation with `queue.enqueue_in`; if that job is lost (Redis
restarted, scheduler lock held by a killed worker), the sweep re-enqueues the run from the row.

Actions are read when they run, so an edit applies to runs in progress from their next action on
(a run keeps its position: removing an action before it shifts what comes next). An inactive
automation's runs pause at their next action and resume when it is activated again.
Failures re-raise for RQ's retries; once none are left the run is marked failed with the error.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from webapp.automations import context, matching, outbox, steps
from webapp.automations.dispatch import enqueue_run, enqueue_send, new_token, publish_active_count
from webapp.automations.models import (
    RUN_COMPLETED, RUN_FAILED, RUN_PAUSED, RUN_RUNNING, RUN_WAITING, Automation, AutomationRun,
    AutomationRunLog, AutomationTriggerCheck,
)
from webapp.automations.personalization import TAG_RE, render_email, render_subject
from webapp.crm.models import ContactField, Order, Tag, TriggerFired
from webapp.crm.service import ValidationError, add_tag, check_field_value, remove_tag
from webapp.extensions import db
from webapp.upsert import dialect_insert
from webapp.stripe_sync.queue.enqueue import REDIS_DOWN
from webapp.stripe_sync.models import StripeEvent
from webapp.stripe_sync.apply.failures import short_message
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_ACTIONS_PER_JOB = 200  # a loop guard; real automations are far shorter
EARLY_TOLERANCE = timedelta(seconds=1)


# --- entering -------------------------------------------------------------------------------------

def _insert_ignore(model, **values) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; the row count says whether this call inserted it."""
    return db.session.execute(dialect_insert(model).values(**values).on_conflict_do_nothing()).rowcount


def firing_facts(fired: TriggerFired) -> matching.Fired:
    """A fired trigger as the matcher reads it, with the purchase's order when there is one."""
    details = fired.details or {}
    facts = matching.Fired(trigger=fired.trigger, event_type=fired.event_type, details=details,
                           amount=details.get("amount"), currency=details.get("currency"))
    order_id = details.get("order_id")
    order = db.session.get(Order, order_id) if isinstance(order_id, int) else None
    if order is not None:
        facts.products = [str(p.get("name")) for p in (order.products or []) if p.get("name")]
        facts.amount, facts.currency = order.amount_total, order.currency
    return facts


def enter(trigger_fired_ids: list[int]) -> list[int]:
    """Start runs for fired triggers; returns the new runs' ids (each already enqueued)."""
    since = db.session.scalar(select(func.min(Automation.activated_at)).where(Automation.active.is_(True)))
    db.session.rollback()
    if since is None:
        publish_active_count(0)  # later triggers skip this job until an automation is activated
        return []  # nothing is active: no writes at all (the sweep looks only from `since` on too)
    created: list[tuple[int, str]] = []
    for fired_id in trigger_fired_ids:
        created.extend(_enter_one(int(fired_id), since))
    for run_id, token in created:
        try:
            enqueue_run(run_id, token)
        except REDIS_DOWN as exc:
            log.warning("Automation run %s not queued (Redis: %s); the sweep will queue it", run_id,
                        type(exc).__name__)
    return [run_id for run_id, _token in created]


def _enter_one(fired_id: int, since) -> list[tuple[int, str]]:
    """Check one fired trigger against the active automations, once, in one transaction."""
    fired = db.session.get(TriggerFired, fired_id)
    if fired is None or fired.created_at < since:
        db.session.rollback()
        return []  # fired before any active automation was activated
    created_at, trigger = fired.created_at, fired.trigger
    if not _insert_ignore(AutomationTriggerCheck, trigger_fired_id=fired_id, checked_at=utcnow()):
        db.session.rollback()
        return []  # another job checked it already
    candidates = list(db.session.scalars(
        select(Automation).where(Automation.active.is_(True), Automation.trigger_type == trigger,
                                 Automation.activated_at <= created_at).order_by(Automation.id)))
    facts = firing_facts(fired) if candidates else None
    created = []
    for automation in candidates:
        if not matching.matches(automation.trigger_type, automation.trigger_config, facts):
            continue
        run = AutomationRun(automation_id=automation.id, contact_id=fired.contact_id, trigger_fired_id=fired.id,
                            event_row_id=fired.event_row_id, event_type=fired.event_type, state=RUN_RUNNING,
                            step_index=0)
        try:
            with db.session.begin_nested():
                db.session.add(run)
        except IntegrityError:
            continue
        run.job_id = new_token(run.id)
        db.session.add(AutomationRunLog(run_id=run.id, message=f"Entered: {matching.describe_firing(facts)}."))
        created.append((run.id, run.job_id))
    db.session.commit()
    if created:
        log.info("Fired trigger %s (%s) started %s automation run(s)", fired_id, trigger, len(created))
    return created


# --- advancing ------------------------------------------------------------------------------------

def _claim(run_id: int, token: str, expected: str, at_step: int | None = None, **values) -> bool:
    """Move the run only if this job still owns it in the expected state (and position)."""
    conditions = [AutomationRun.id == run_id, AutomationRun.job_id == token, AutomationRun.state == expected]
    if at_step is not None:
        conditions.append(AutomationRun.step_index == at_step)
    values.setdefault("updated_at", utcnow())
    return bool(db.session.execute(update(AutomationRun).where(*conditions).values(**values)
                                   .execution_options(synchronize_session=False)).rowcount)


def _log(run_id: int, message: str, step_index: int | None = None, level: str = "info") -> None:
    """One run log line in the current transaction."""
    db.session.add(AutomationRunLog(run_id=run_id, step_index=step_index, message=message, level=level))


def advance(run_id: int, token: str) -> str:
    """Run the run's actions from where it stands until it waits, pauses or finishes."""
    for _ in range(MAX_ACTIONS_PER_JOB):
        db.session.rollback()
        run = db.session.get(AutomationRun, run_id, populate_existing=True)
        if run is None:
            return "gone"
        if run.job_id != token:
            return "superseded"
        if run.state == RUN_WAITING:
            outcome = _wake(run, token)
            if outcome:
                return outcome
            continue
        if run.state != RUN_RUNNING:
            return run.state
        automation = db.session.get(Automation, run.automation_id, populate_existing=True)
        if not automation.active:
            if _claim(run_id, token, RUN_RUNNING, state=RUN_PAUSED):
                _log(run_id, "Paused: the automation is inactive. It carries on when activated.", run.step_index)
            db.session.commit()
            return RUN_PAUSED
        actions = list(automation.steps)
        if run.step_index >= len(actions):
            if _claim(run_id, token, RUN_RUNNING, run.step_index, state=RUN_COMPLETED, finished_at=utcnow(),
                      error=None):
                _log(run_id, "Completed.")
            db.session.commit()
            return RUN_COMPLETED
        outcome = _run_action(run, actions[run.step_index], token, len(actions))
        if outcome:
            return outcome
    log.warning("Automation run %s: more than %s actions in one job; continuing in another", run_id,
                MAX_ACTIONS_PER_JOB)
    fresh = new_token(run_id)
    if not _claim(run_id, token, RUN_RUNNING, job_id=fresh):
        db.session.rollback()
        return "superseded"
    db.session.commit()
    enqueue_run(run_id, fresh)
    return "continued"


def _wake(run: AutomationRun, token: str) -> str | None:
    """After a wait: carry on (None), or schedule the rest when woken early."""
    now = utcnow()
    if run.next_run_at is not None and run.next_run_at > now + EARLY_TOLERANCE:
        fresh = new_token(run.id)
        if not _claim(run.id, token, RUN_WAITING, job_id=fresh):
            db.session.rollback()
            return "superseded"
        db.session.commit()
        enqueue_run(run.id, fresh, run.next_run_at - now)
        return "rescheduled"
    if not _claim(run.id, token, RUN_WAITING, state=RUN_RUNNING, next_run_at=None):
        db.session.rollback()
        return "superseded"
    _log(run.id, "Resumed after the wait.", run.step_index)
    db.session.commit()
    return None


def _run_action(run: AutomationRun, step, token: str, count: int) -> str | None:
    """One action and its step move in one transaction; returns why the job stops, or None."""
    index = run.step_index
    label = f"Action {index + 1} of {count}"
    moves: dict = {"step_index": index + 1}
    fresh = None
    if step.kind == steps.WAIT:
        delay = steps.wait_delay(step.config)
        fresh = new_token(run.id)
        moves.update(state=RUN_WAITING, next_run_at=utcnow() + delay, job_id=fresh)
    elif step.kind == steps.END:
        moves.update(state=RUN_COMPLETED, finished_at=utcnow())
    if not _claim(run.id, token, RUN_RUNNING, index, **moves):
        db.session.rollback()
        return "superseded"
    after_commit = None
    if step.kind == steps.WAIT:
        message = f"{label}: waiting {steps.describe_wait(step.config)}, until " \
                  f"{moves['next_run_at']:%Y-%m-%d %H:%M:%S} UTC."
    elif step.kind == steps.END:
        message = f"{label}: ended by an End action."
    elif step.kind == steps.SEND_EMAIL:
        message, after_commit = _send_email(run, step, index, label)
    else:
        message = f"{label}: {_apply_contact_action(run, step)}"
    _log(run.id, message, index)
    db.session.commit()
    if after_commit is not None:
        after_commit()
    if step.kind == steps.WAIT:
        try:
            enqueue_run(run.id, fresh, steps.wait_delay(step.config))
        except REDIS_DOWN as exc:
            log.warning("Automation run %s: wait not scheduled (Redis: %s); the sweep will", run.id,
                        type(exc).__name__)
        return RUN_WAITING
    if step.kind == steps.END:
        return RUN_COMPLETED
    return None


def _apply_contact_action(run: AutomationRun, step) -> str:
    """Tags and fields, in the caller's transaction; returns the log text."""
    contact = run.contact
    config = step.config or {}
    if step.kind == steps.ADD_TAG:
        add_tag(contact, config.get("tag", ""))
        return f"added tag “{config.get('tag')}”."
    if step.kind == steps.REMOVE_TAG:
        name = str(config.get("tag", ""))
        tag = db.session.scalar(select(Tag).where(Tag.name_lower == name.lower()))
        if tag is None or not any(link.tag_id == tag.id for link in contact.tag_links):
            return f"tag “{name}” was not on the contact."
        remove_tag(contact, tag.id)
        return f"removed tag “{name}”."
    if step.kind == steps.UPDATE_FIELD:
        return _update_field(run, contact, config)
    return f"skipped an unknown action ({step.kind})."


def _update_field(run: AutomationRun, contact, config: dict) -> str:
    """Set one field, rendering personalization tags in the value first."""
    field = db.session.get(ContactField, config.get("field_id")) if config.get("field_id") else None
    if field is None or field.key == "email":
        return "skipped: the field no longer exists."
    value = str(config.get("value") or "")
    if TAG_RE.search(value):
        value = render_subject(value, context.values_for(contact, _event_row(run)))
    if field.is_standard:
        setattr(contact, field.key, value[:steps.UPDATABLE_STANDARD.get(field.key, 200)])
        contact.refresh_keys()
    else:
        from webapp.crm.service import set_custom_value
        try:
            value = check_field_value(field, value)
        except ValidationError as exc:
            return f"skipped setting {field.label}: {next(iter(exc.errors.values()))}"
        set_custom_value(contact, field, value)
    return f"set {field.label} to “{value}”." if value else f"cleared {field.label}."


def _event_row(run: AutomationRun) -> StripeEvent | None:
    """The Stripe event that started the run, for Stripe tags."""
    return db.session.get(StripeEvent, run.event_row_id) if run.event_row_id else None


def _send_email(run: AutomationRun, step, index: int, label: str):
    """Render and store the message with the step move; the delivery job is queued after commit."""
    config = step.config or {}
    contact = run.contact
    rendered = render_email(config.get("subject", ""), config.get("body", ""),
                            context.values_for(contact, _event_row(run)))
    automation = db.session.get(Automation, run.automation_id)
    message = outbox.store(run_id=run.id, step_index=index, automation_id=run.automation_id,
                           automation_name=automation.name if automation else "", contact_id=contact.id,
                           to_email=contact.email, subject=rendered.subject, body_html=rendered.html,
                           body_text=rendered.text)
    text = f"{label}: email “{rendered.subject}” to {contact.email}"
    if message.state == outbox.MSG_NOT_SENT:
        return f"{text} stored in the outbox, not sent (no SMTP_URL configured).", None
    message_id = message.id

    def queue_delivery():
        """After commit, so the job never looks for an uncommitted row."""
        try:
            enqueue_send(message_id)
        except REDIS_DOWN as exc:
            log.warning("Outbox message %s not queued (Redis: %s); the sweep will queue it", message_id,
                        type(exc).__name__)
    return f"{text} queued for sending.", queue_delivery


# --- failures, activation --------------------------------------------------------------------------

def record_failure(run_id: int, token: str, exc: BaseException, will_retry: bool) -> None:
    """Leave the error on the run and in its log; with no retry left the run is failed."""
    try:
        db.session.rollback()
        run = db.session.get(AutomationRun, run_id, populate_existing=True)
        if run is None or run.job_id != token or run.state not in (RUN_RUNNING, RUN_WAITING):
            db.session.rollback()
            return
        message = short_message(exc)
        run.error = message
        if not will_retry:
            run.state, run.finished_at = RUN_FAILED, utcnow()
        _log(run_id, f"Action {run.step_index + 1} failed: {message} ({'will retry' if will_retry else 'gave up'}).",
             run.step_index, "error")
        db.session.commit()
        log.warning("Automation run %s failed at action %s: %s", run_id, run.step_index + 1, message)
    except Exception:
        db.session.rollback()
        log.exception("Could not record the failure of automation run %s", run_id)


def resume_paused(automation_id: int) -> int:
    """After activation: paused runs carry on where they stopped; returns how many."""
    ids = list(db.session.scalars(select(AutomationRun.id).where(
        AutomationRun.automation_id == automation_id, AutomationRun.state == RUN_PAUSED)))
    resumed = []
    for run_id in ids:
        fresh = new_token(run_id)
        changed = db.session.execute(update(AutomationRun).where(
            AutomationRun.id == run_id, AutomationRun.state == RUN_PAUSED).values(
            state=RUN_RUNNING, job_id=fresh, updated_at=utcnow())).rowcount
        if changed:
            _log(run_id, "Resumed: the automation was activated.")
            resumed.append((run_id, fresh))
    db.session.commit()
    for run_id, fresh in resumed:
        try:
            enqueue_run(run_id, fresh)
        except REDIS_DOWN:
            log.warning("Automation run %s not queued on activation; the sweep will queue it", run_id)
    return len(resumed)
