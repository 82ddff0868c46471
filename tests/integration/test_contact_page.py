"""The contact page puts the CRM's commerce cards first and the Stripe side's activity card last."""
from datetime import datetime

from webapp.crm import service
from webapp.crm.models import EcommerceCustomer, Order
from webapp.stripe_sync.models import StripeAccount, StripeEvent, SyncLog


def test_buyer_in_two_accounts_sees_both_names_then_orders_then_stripe_activity(auth_client, db):
    ada = service.save_contact(None, {"email": "ada@example.com"})
    accounts = [StripeAccount(stripe_account_id="acct_1", display_name="Engine <i>Room</i>"),
                StripeAccount(stripe_account_id="acct_2", email="owner@second.test")]
    db.session.add_all(accounts)
    db.session.flush()
    db.session.add_all([EcommerceCustomer(account_id=a.id, contact_id=ada.id, total_revenue=45000, total_orders=1,
                                          currency="usd") for a in accounts])
    db.session.add(Order(account_id=accounts[0].id, contact_id=ada.id, external_id="cs_1", amount_total=45000,
                         currency="usd", status="paid", ordered_at=datetime(2024, 5, 1)))
    event = StripeEvent(account_id=accounts[0].id, stripe_event_id="evt_1", type="checkout.session.completed",
                        created=1_714_521_600, payload="{}", status="processed", contact_id=ada.id)
    db.session.add(event)
    db.session.flush()
    db.session.add(SyncLog(account_id=accounts[0].id, contact_id=ada.id, event_type="checkout.session.completed",
                           outcome="created", event_row_id=event.id))
    db.session.commit()
    html = auth_client.get(f"/contacts/{ada.id}").get_data(as_text=True)
    assert "<dt>Stripe account</dt><dd>Engine &lt;i&gt;Room&lt;/i&gt;</dd>" in html
    assert "<dt>Stripe account</dt><dd>owner@second.test</dd>" in html
    cards = ['id="ecommerce-customer"', 'id="orders"', 'id="recurring-payments"', 'id="stripe-activity"']
    assert [html.index(card) for card in cards] == sorted(html.index(card) for card in cards)
    assert '<span class="badge badge-ok">Created</span>' in html and "checkout.session.completed" in html


def test_one_buyer_record_shows_no_account_name(auth_client, db):
    ada = service.save_contact(None, {"email": "ada@example.com"})
    account = StripeAccount(stripe_account_id="acct_1", display_name="Engine Room")
    db.session.add(account)
    db.session.flush()
    db.session.add(EcommerceCustomer(account_id=account.id, contact_id=ada.id))
    db.session.commit()
    html = auth_client.get(f"/contacts/{ada.id}").get_data(as_text=True)
    assert "Stripe account" not in html and "No Stripe events for this contact yet." in html
