"""Trigger listeners hear about committed firings only."""
import json

from tests.helpers import EVENTS_DIR
from webapp.crm import service
from webapp.stripe_sync.apply import triggers
from webapp.stripe_sync.apply.contacts import ContactCache
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
    cache = ContactCache({})
    assert triggers.fire_trigger(cache, triggers.STRIPE_EVENT_RECEIVED, contact, row) is not None
    fired = triggers.insert_firings(cache.new_firings)
    assert heard == [] and len(fired) == 1
    db.session.commit()
    assert heard == [fired]
    row2 = StripeEvent(account_id=row.account_id, stripe_event_id="evt_2", type="customer.created",
                       created=1, payload="{}")
    db.session.add(row2)
    db.session.flush()
    again = ContactCache({})
    triggers.fire_trigger(again, triggers.STRIPE_EVENT_RECEIVED, contact, row2)
    triggers.insert_firings(again.new_firings)
    db.session.rollback()
    db.session.commit()
    assert heard == [fired]
    assert triggers.insert_firings(cache.new_firings) == []  # once per event
    assert heard == [fired]


def test_several_firings_in_one_transaction_are_announced_once_at_its_commit(db, monkeypatch):
    heard = []
    monkeypatch.setattr(triggers, "_listeners", [])
    triggers.on_fired(heard.append)
    ada = service.save_contact(None, {"email": "ada@example.com"})
    grace = service.save_contact(None, {"email": "grace@example.com"})
    row = _event(db)
    for_ada, for_grace = ContactCache({}), ContactCache({})
    triggers.fire_trigger(for_ada, triggers.STRIPE_EVENT_RECEIVED, ada, row)
    first = triggers.insert_firings(for_ada.new_firings)
    triggers.fire_trigger(for_grace, triggers.STRIPE_EVENT_RECEIVED, grace, row)
    second = triggers.insert_firings(for_grace.new_firings)
    with db.session.begin_nested():  # a SAVEPOINT released: SQLAlchemy runs after_commit for it too
        pass
    assert heard == []  # nothing is committed yet, so no automation job may start
    db.session.commit()
    assert heard == [first + second]
