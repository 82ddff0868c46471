"""Domain functions behind the Automations pages: create, edit, trigger, actions, (de)activate, delete.

Decisions:
- "Stripe event received" offers the event types of the resources that are connected (not
  disconnected), in the event table's order; a type an automation already uses stays listed
  (marked not connected) so editing never silently drops it.
- "Recurring Payment Created" / "Recurring Payment Updated" are offered once at least one
  recurring payment has synced; saving them before is refused with the same explanation.
- Activation needs a trigger and at least one action. Each activation stamps `activated_at`:
  only triggers fired from then on enter, so switching an automation on never replays history.
- Deactivating stops new entries; runs in progress pause at their next action and carry on
  when the automation is activated again.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import selectinload

from webapp.automations import steps as steps_mod
from webapp.automations.dispatch import publish_active_count
from webapp.automations.matching import (
    PURCHASE_FILTERS, PURCHASE_MIN_AMOUNT, PURCHASE_PRODUCT, RECURRING_STATUSES, RECURRING_TRIGGERS,
)
from webapp.automations.models import Automation, AutomationRun, AutomationStep, OutboxMessage
from webapp.crm.models import RecurringPayment
from webapp.crm.service import ValidationError
from webapp.extensions import db
from webapp.stripe_sync.events import RESOURCES
from webapp.stripe_sync.models import RESOURCE_DISCONNECTED, StripeResource
from webapp.stripe_sync.apply.triggers import MAKES_PURCHASE, STRIPE_EVENT_RECEIVED, TRIGGERS
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

RECURRING_MISSING = ("Recurring Payment Created and Recurring Payment Updated appear once at least one "
                     "recurring payment has synced from Stripe (connect the Subscription resource under Apps).")
NO_EVENTS = "Connect a Stripe resource under Apps to choose its events here."


def all_automations() -> list[Automation]:
    """Newest first, for the list."""
    return list(db.session.scalars(select(Automation).options(selectinload(Automation.steps))
                                   .order_by(Automation.id.desc())))


def entered_counts(automation_ids: list[int] | None = None) -> dict[int, tuple[int, int]]:
    """Per automation: (runs, distinct contacts) that entered it."""
    query = select(AutomationRun.automation_id, func.count(AutomationRun.id),
                   func.count(distinct(AutomationRun.contact_id))).group_by(AutomationRun.automation_id)
    if automation_ids is not None:
        query = query.where(AutomationRun.automation_id.in_(automation_ids))
    return {row[0]: (row[1], row[2]) for row in db.session.execute(query)}


def _clean_name(raw: str | None) -> str:
    """Present and short."""
    steps_mod.reject_nul({"name": raw}, "name")
    name = " ".join((raw or "").split())
    if not name:
        raise ValidationError({"name": "Enter a name."})
    if len(name) > 200:
        raise ValidationError({"name": "Names are at most 200 characters."})
    return name


def create(name: str | None) -> Automation:
    """A new, inactive automation with no trigger and no actions."""
    automation = Automation(name=_clean_name(name), active=False)
    db.session.add(automation)
    db.session.commit()
    log.info("Automation %s (%s) created", automation.id, automation.name)
    return automation


def rename(automation: Automation, name: str | None) -> Automation:
    """Change the name the list and the outbox show."""
    automation.name = _clean_name(name)
    db.session.commit()
    return automation


def delete(automation: Automation) -> None:
    """Remove it with its actions and runs; outbox messages stay (with the automation's name)."""
    log.info("Automation %s (%s) deleted", automation.id, automation.name)
    db.session.delete(automation)
    db.session.commit()
    publish_active_count(active_count())


def active_count() -> int:
    """How many automations take contacts now."""
    return db.session.scalar(select(func.count(Automation.id)).where(Automation.active.is_(True)))


# --- triggers ------------------------------------------------------------------------------------

@dataclass
class EventGroup:
    """The event types one connected resource brings in."""

    name: str
    event_types: list[str]


def offered_event_groups(keep: list[str] | None = None) -> list[EventGroup]:
    """Event types of the connected resources, by resource; `keep` adds types already chosen."""
    kinds = set(db.session.scalars(select(StripeResource.kind).where(StripeResource.status != RESOURCE_DISCONNECTED)))
    groups = [EventGroup(r.name, list(r.event_types)) for r in RESOURCES if r.kind in kinds]
    offered = {t for g in groups for t in g.event_types}
    missing = [t for t in (keep or []) if t not in offered]
    if missing:
        groups.append(EventGroup("Not connected any more", missing))
    return groups


def recurring_offered() -> bool:
    """Whether any recurring payment has synced yet."""
    return db.session.scalar(select(RecurringPayment.id).limit(1)) is not None


def offered_triggers() -> dict[str, bool]:
    """Which triggers can be chosen now."""
    has_events = bool(offered_event_groups())
    has_recurring = recurring_offered()
    return {STRIPE_EVENT_RECEIVED: has_events, MAKES_PURCHASE: True,
            **{t: has_recurring for t in RECURRING_TRIGGERS}}


def clean_trigger(trigger_type: str | None, raw: Mapping[str, Any], event_types: list[str],
                  current: Automation | None = None) -> dict:
    """Validate a trigger's options; ValidationError names each bad input."""
    if trigger_type not in TRIGGERS:
        raise ValidationError({"trigger": "Choose a trigger."})
    steps_mod.reject_nul(raw, "product_name")
    if trigger_type == STRIPE_EVENT_RECEIVED:
        already = (current.trigger_config or {}).get("event_types", []) if current and \
            current.trigger_type == STRIPE_EVENT_RECEIVED else []
        offered = {t for g in offered_event_groups(already) for t in g.event_types}
        chosen = [t for t in dict.fromkeys(event_types) if t]
        if not chosen:
            raise ValidationError({"event_types": "Choose at least one event type."})
        unknown = [t for t in chosen if t not in offered]
        if unknown:
            raise ValidationError({"event_types": f"Not an event of a connected resource: {', '.join(unknown)}."})
        return {"event_types": chosen}
    if trigger_type == MAKES_PURCHASE:
        mode = str(raw.get("filter") or "any")
        if mode not in PURCHASE_FILTERS:
            raise ValidationError({"filter": "Choose which purchases start the automation."})
        if mode == PURCHASE_PRODUCT:
            text = " ".join(str(raw.get("product_name") or "").split())
            if not text:
                raise ValidationError({"product_name": "Enter part of a product name."})
            return {"filter": mode, "product_name": text[:200]}
        if mode == PURCHASE_MIN_AMOUNT:
            try:
                amount = Decimal(str(raw.get("min_amount") or "").strip().replace(",", ""))
            except InvalidOperation:
                amount = None
            if amount is None or not amount.is_finite() or amount <= 0 or amount >= Decimal(10) ** 12:
                raise ValidationError({"min_amount": "Enter an amount greater than 0, like 49.99."})
            return {"filter": mode, "min_amount": format(amount.normalize(), "f")}
        return {"filter": "any"}
    if not recurring_offered() and not (current and current.trigger_type == trigger_type):
        raise ValidationError({"trigger": RECURRING_MISSING})
    status = str(raw.get("status") or "")
    if status and status not in RECURRING_STATUSES:
        raise ValidationError({"status": "Choose a status."})
    return {"status": status} if status else {}


def set_trigger(automation: Automation, trigger_type: str | None, raw: Mapping[str, Any],
                event_types: list[str]) -> Automation:
    """Save what starts the automation."""
    config = clean_trigger(trigger_type, raw, event_types, automation)
    automation.trigger_type, automation.trigger_config = trigger_type, config
    db.session.commit()
    return automation


# --- actions -------------------------------------------------------------------------------------

def _renumber(automation: Automation) -> None:
    """Positions 0..n-1 in list order, so a run's step_index names one action."""
    for position, step in enumerate(automation.steps):
        step.position = position


def add_step(automation: Automation, kind: str, raw: Mapping[str, Any]) -> AutomationStep:
    """Append an action."""
    config = steps_mod.clean_step(kind, raw)
    step = AutomationStep(kind=kind, config=config, position=len(automation.steps))
    automation.steps.append(step)
    db.session.commit()
    return step


def update_step(step: AutomationStep, raw: Mapping[str, Any]) -> AutomationStep:
    """Change an action's settings (its kind stays)."""
    step.config = steps_mod.clean_step(step.kind, raw)
    db.session.commit()
    return step


def delete_step(step: AutomationStep) -> None:
    """Remove an action; later ones move up."""
    automation = step.automation
    automation.steps.remove(step)
    _renumber(automation)
    db.session.commit()


def move_step(step: AutomationStep, direction: str) -> None:
    """Swap an action with its neighbour ("up" or "down")."""
    automation = step.automation
    ordered = list(automation.steps)
    index = ordered.index(step)
    other = index - 1 if direction == "up" else index + 1
    if 0 <= other < len(ordered):
        ordered[index], ordered[other] = ordered[other], ordered[index]
        for position, item in enumerate(ordered):
            item.position = position
        db.session.commit()
        db.session.expire(automation, ["steps"])


def field_labels() -> dict[int, str]:
    """Field labels by id, for describing "update field" actions."""
    from webapp.crm.service import all_fields

    return {f.id: f.label for f in all_fields()}


# --- activation ----------------------------------------------------------------------------------

def activation_problem(automation: Automation) -> str | None:
    """Why it cannot be activated yet, or None."""
    if not automation.trigger_type:
        return "Choose a trigger before activating."
    if not automation.steps:
        return "Add at least one action before activating."
    return None


def activate(automation: Automation) -> int:
    """Start taking contacts from now on; paused runs carry on. Returns how many resumed."""
    from webapp.automations.engine import resume_paused

    problem = activation_problem(automation)
    if problem:
        raise ValidationError({"active": problem})
    if not automation.active:
        automation.active, automation.activated_at = True, utcnow()
        db.session.commit()
        log.info("Automation %s (%s) activated", automation.id, automation.name)
    publish_active_count(active_count())
    return resume_paused(automation.id)


def deactivate(automation: Automation) -> None:
    """Stop taking contacts; runs in progress pause at their next action."""
    if automation.active:
        automation.active = False
        db.session.commit()
        log.info("Automation %s (%s) deactivated", automation.id, automation.name)
    publish_active_count(active_count())


# --- runs ----------------------------------------------------------------------------------------

RUNS_PAGE = 50


def recent_runs(automation_id: int, limit: int = RUNS_PAGE) -> list[AutomationRun]:
    """The newest runs of an automation, for its runs table."""
    return list(db.session.scalars(select(AutomationRun).where(AutomationRun.automation_id == automation_id)
                                   .order_by(AutomationRun.id.desc()).limit(limit)))


def run_messages(run_id: int) -> list[OutboxMessage]:
    """The emails one run rendered, in order."""
    return list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.run_id == run_id)
                                   .order_by(OutboxMessage.id)))


def preview_choices(limit: int) -> dict:
    """Recent contacts and Stripe events the email preview can render for, with each event's email."""
    from webapp.crm.models import Contact
    from webapp.stripe_sync.models import StripeEvent

    contacts = list(db.session.scalars(select(Contact).order_by(Contact.id.desc()).limit(limit)))
    events = list(db.session.scalars(select(StripeEvent).order_by(StripeEvent.id.desc()).limit(limit)))
    emails = {c.id: c.email for c in contacts}
    missing = {e.contact_id for e in events if e.contact_id and e.contact_id not in emails}
    if missing:
        emails.update(dict(db.session.execute(select(Contact.id, Contact.email).where(Contact.id.in_(missing))).all()))
    return {"preview_contacts": contacts, "preview_events": events, "event_emails": emails}
