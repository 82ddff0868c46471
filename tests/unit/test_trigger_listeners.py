"""Trigger listeners hear about committed firings only."""
import json

from tests.conftest import EVENTS_DIR
from webapp.crm import service
from webapp.stripe_sync.apply import triggers
from webapp.stripe_sync.models import StripeAccount, StripeEvent


def _event(db):
    account = StripeAccount(stripe_account_id="acct_x")
    db.session.add(account)
    db.session.flush()
    raw = (EVENTS_DIR / "customer.created.json").read_text()
    row = StripeEvent(account_id=account.id, stripe_event_id="evt_1", type="customer.created",
                      created=json.loads(raw)["created"], payload=raw)
    db.session.add(row)
    db.session.flush()
    return row


def test_listeners_get_ids_after_commit_and_nothing_after_rollback(db, monkeypatch):
    heard = []
    monkeypatch.setattr(triggers, "_listeners", [])
    triggers.on_fired(heard.append)
    contact = service.save_contact(None, {"email": "ada@example.com"})
    row = _event(db)
    fired = triggers.fire_trigger(triggers.STRIPE_EVENT_RECEIVED, contact, row)
    assert heard == []
    db.session.commit()
    assert heard == [[fired.id]]
    row2 = StripeEvent(account_id=row.account_id, stripe_event_id="evt_2", type="customer.created",
                       created=1, payload="{}")
    db.session.add(row2)
    db.session.flush()
    triggers.fire_trigger(triggers.STRIPE_EVENT_RECEIVED, contact, row2)
    db.session.rollback()
    db.session.commit()
    assert heard == [[fired.id]]
    assert triggers.fire_trigger(triggers.STRIPE_EVENT_RECEIVED, contact, row) is None  # once per event


def test_several_firings_in_one_transaction_are_announced_once_at_its_commit(db, monkeypatch):
    heard = []
    monkeypatch.setattr(triggers, "_listeners", [])
    triggers.on_fired(heard.append)
    ada = service.save_contact(None, {"email": "ada@example.com"})
    grace = service.save_contact(None, {"email": "grace@example.com"})
    row = _event(db)
    first = triggers.fire_trigger(triggers.STRIPE_EVENT_RECEIVED, ada, row)
    second = triggers.fire_trigger(triggers.STRIPE_EVENT_RECEIVED, grace, row)  # its SAVEPOINT is released
    with db.session.begin_nested():
        pass
    assert heard == []  # nothing is committed yet, so no automation job may start
    db.session.commit()
    assert heard == [[first.id, second.id]]
