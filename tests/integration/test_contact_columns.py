"""The contacts list's Stripe columns: lifetime value, subscription and last payment, shown as a marketer
reads them, sortable both ways from the headers, and kept right by crm/summary.py and migration 0012."""
import re
from datetime import datetime

import pytest
from sqlalchemy import select, text

from webapp.config import ROOT
from webapp.crm import search, service
from webapp.crm.models import Contact, EcommerceCustomer, RecurringPayment
from webapp.crm.summary import contacts_changed_in_session, refresh_summaries
from webapp.stripe_sync.models import StripeAccount, StripeEvent

HTMX = {"HX-Request": "true", "HX-Target": "contact-table"}


@pytest.fixture
def app_config(database_config):
    """The database alone."""
    return database_config


def contact(email, **figures):
    """A contact made by hand, then given list figures directly (as refresh_summaries would)."""
    c = service.save_contact(None, {"email": email})
    for name, value in figures.items():
        setattr(c, name, value)
    return c


@pytest.fixture
def shop(db):
    """Five contacts, oldest first: values, statuses and payments with gaps and ties."""
    made = [contact("a@shop.test", lifetime_value=500, lifetime_currency="usd", subscription_status="ACTIVE",
                    last_payment_at=datetime(2026, 3, 1, 9)),
            contact("b@shop.test"),
            contact("c@shop.test", lifetime_value=12000, lifetime_currency="usd", subscription_status="CANCELLED",
                    last_payment_at=datetime(2026, 5, 2)),
            contact("d@shop.test", lifetime_value=500, lifetime_currency="usd", subscription_status="PAYMENT_FAILED"),
            contact("e@shop.test", lifetime_value=3000, lifetime_currency="eur",
                    last_payment_at=datetime(2026, 1, 15))]
    db.session.commit()
    return made


def listed(auth_client, url):
    """The emails in the table, in order, from the htmx fragment."""
    resp = auth_client.get(url, headers=HTMX)
    assert resp.status_code == 200
    return re.findall(r'/contacts/\d+">([^<]+)</a>', resp.get_data(as_text=True))


def test_the_columns_show_value_subscription_and_last_payment(auth_client, shop):
    html = auth_client.get("/contacts").get_data(as_text=True)
    for header in ("Email", "Name", "Phone", "Tags", "Lifetime value", "Subscription", "Last payment", "Added"):
        assert re.search(rf"<th[^>]*>\s*(<a[^>]*>)?{header}", html), header
    row = re.search(r"<tr>\s*<td><a[^>]*>c@shop.test</a>.*?</tr>", html, re.S).group(0)
    assert "$120.00" in row and ">Cancelled</span>" in row and "badge-danger" in row and "2026-05-02" in row
    row = re.search(r"<tr>\s*<td><a[^>]*>e@shop.test</a>.*?</tr>", html, re.S).group(0)
    assert "€30.00" in row and "badge" not in row
    row = re.search(r"<tr>\s*<td><a[^>]*>b@shop.test</a>.*?</tr>", html, re.S).group(0)
    assert "$" not in row and "badge" not in row  # nothing known: blank cells
    assert 'aria-sort="descending"' in html and html.count("aria-sort=") == 1  # newest first, by Added


def test_sorting_by_lifetime_value_both_ways(auth_client, shop):
    most = listed(auth_client, "/contacts?sort=-lifetime_value")
    assert most == ["c@shop.test", "e@shop.test", "d@shop.test", "a@shop.test", "b@shop.test"]  # ties: newer first
    assert listed(auth_client, "/contacts?sort=lifetime_value") == most[::-1]


def test_contacts_without_a_value_come_last_either_way(auth_client, shop):
    assert listed(auth_client, "/contacts?sort=-last_payment") == ["c@shop.test", "a@shop.test", "e@shop.test",
                                                                   "d@shop.test", "b@shop.test"]
    assert listed(auth_client, "/contacts?sort=last_payment") == ["e@shop.test", "a@shop.test", "c@shop.test",
                                                                  "d@shop.test", "b@shop.test"]
    assert listed(auth_client, "/contacts?sort=subscription") == ["a@shop.test", "c@shop.test", "d@shop.test",
                                                                  "e@shop.test", "b@shop.test"]
    assert listed(auth_client, "/contacts?sort=-subscription") == ["d@shop.test", "c@shop.test", "a@shop.test",
                                                                   "e@shop.test", "b@shop.test"]


def test_pages_run_on_past_the_last_value(db, shop):
    pages = [[c.email for c in service.search_contacts(page=n, per_page=2, sort="last_payment").items]
             for n in (1, 2, 3)]
    assert pages == [["e@shop.test", "a@shop.test"], ["c@shop.test", "d@shop.test"], ["b@shop.test"]]
    assert [c.email for c in service.search_contacts(page=2, per_page=1, sort="-subscription").items] == ["c@shop.test"]
    assert [c.email for c in service.search_contacts(page=5, per_page=1, sort="-subscription").items] == ["b@shop.test"]


def test_a_header_click_sorts_and_a_second_click_reverses(auth_client, shop):
    html = auth_client.get("/contacts?q=shop", headers=HTMX).get_data(as_text=True)
    link = re.search(r'<th[^>]*>\s*<a class="sort-link" href="([^"]+)" hx-get="([^"]+)"[^>]*>Lifetime value', html)
    assert link.group(1) == link.group(2) == "/contacts?q=shop&amp;sort=-lifetime_value"
    html = auth_client.get("/contacts?q=shop&sort=-lifetime_value", headers=HTMX).get_data(as_text=True)
    header = re.search(r'<th([^>]*)>\s*<a class="sort-link" href="([^"]+)"[^>]*>Lifetime value', html)
    assert 'aria-sort="descending"' in header.group(1)
    assert header.group(2) == "/contacts?q=shop&amp;sort=lifetime_value"
    html = auth_client.get("/contacts?q=shop&sort=lifetime_value", headers=HTMX).get_data(as_text=True)
    assert re.search(r'<th[^>]*aria-sort="ascending"[^>]*>\s*<a[^>]*>Lifetime value', html)
    # The search box submits the sort with q and tag, so typing keeps the order.
    assert '<input type="hidden" name="sort" value="lifetime_value" form="contact-filters">' in html


def test_sorting_keeps_the_tag_and_the_search(auth_client, db, shop):
    for c in shop[2:]:
        service.add_tag(c, "Buyers")
    db.session.commit()
    tag = service.get_or_create_tag("Buyers")
    assert listed(auth_client, f"/contacts?tag={tag.id}&sort=-lifetime_value") == ["c@shop.test", "e@shop.test",
                                                                                   "d@shop.test"]
    assert listed(auth_client, f"/contacts?q=shop&tag={tag.id}&sort=last_payment") == ["e@shop.test", "c@shop.test",
                                                                                       "d@shop.test"]
    html = auth_client.get(f"/contacts?q=shop&tag={tag.id}&sort=email", headers=HTMX).get_data(as_text=True)
    assert f'href="/contacts?q=shop&amp;tag={tag.id}&amp;sort=-email"' in html


def test_a_sorted_search_that_matches_many_walks_the_index(db, shop, monkeypatch):
    monkeypatch.setattr(search, "WALK_ABOVE", 0)  # as with thousands of matches
    assert [c.email for c in service.search_contacts("shop.t", sort="-lifetime_value").items] == [
        "c@shop.test", "e@shop.test", "d@shop.test", "a@shop.test", "b@shop.test"]
    assert [c.email for c in service.search_contacts("shop.t", sort="-last_payment", per_page=2, page=2).items] == [
        "e@shop.test", "d@shop.test"]


@pytest.mark.parametrize("junk", ["bogus", "--lifetime_value", "-", "", "lifetime_value;drop", "id", "-id",
                                  "name", "LIFETIME_VALUE", "%01", "x" * 500])
def test_an_unknown_sort_is_newest_first(auth_client, shop, junk):
    assert listed(auth_client, f"/contacts?sort={junk}") == ["e@shop.test", "d@shop.test", "c@shop.test",
                                                             "b@shop.test", "a@shop.test"]


# --- the figures themselves ----------------------------------------------------------------------

def _account(db, name):
    account = StripeAccount(stripe_account_id=name, email=f"{name}@example.com")
    db.session.add(account)
    db.session.flush()
    return account.id


def _event(db, account_id, contact_id, type_, created, status="processed"):
    db.session.add(StripeEvent(account_id=account_id, stripe_event_id=f"evt_{type_}_{created}_{contact_id}",
                               type=type_, created=created, payload="{}", status=status, contact_id=contact_id))


def test_refresh_summaries_computes_what_the_list_shows(auth_client, db):
    us, eu = _account(db, "acct_us"), _account(db, "acct_eu")
    ada, bob, cid = (service.save_contact(None, {"email": e}) for e in ("ada@x.test", "bob@x.test", "cid@x.test"))
    db.session.add_all([
        # Ada bought in dollars from one account and, later, in euros from another: euros, not a sum.
        EcommerceCustomer(account_id=us, contact_id=ada.id, total_revenue=5000, currency="usd",
                          last_order_at=datetime(2026, 3, 1)),
        EcommerceCustomer(account_id=eu, contact_id=ada.id, total_revenue=700, currency="eur",
                          last_order_at=datetime(2026, 5, 1)),
        # Bob: two accounts in dollars add up; a subscription-only record (no currency) changes nothing.
        EcommerceCustomer(account_id=us, contact_id=bob.id, total_revenue=1250, currency="usd",
                          last_order_at=datetime(2026, 2, 1)),
        EcommerceCustomer(account_id=eu, contact_id=bob.id, total_revenue=250, currency="usd",
                          last_order_at=datetime(2026, 1, 1)),
        EcommerceCustomer(account_id=us, contact_id=cid.id, total_revenue=0, currency=None),
        *(RecurringPayment(account_id=us, contact_id=who, external_id=sub, status=status, stripe_status=stripe)
          for who, sub, status, stripe in ((ada.id, "sub_1", "CANCELLED", "canceled"),
                                           (ada.id, "sub_2", "PAYMENT_FAILED", "past_due"),
                                           (ada.id, "sub_3", "ACTIVE", "trialing"),
                                           (bob.id, "sub_4", "PAUSED", "paused"),
                                           (bob.id, "sub_5", "ACTIVE", "active"))),
    ])
    may_10 = int((datetime(2026, 5, 10, 12) - datetime(1970, 1, 1)).total_seconds())
    _event(db, us, ada.id, "invoice.payment_succeeded", may_10)       # later than her last order
    _event(db, us, ada.id, "charge.succeeded", may_10 + 86400, "failed")   # not processed: not a payment
    _event(db, us, ada.id, "customer.updated", may_10 + 2 * 86400)    # not a payment
    _event(db, us, cid.id, "checkout.session.completed", may_10 - 86400)
    db.session.commit()
    before = db.session.scalar(select(Contact.updated_at).where(Contact.id == ada.id))

    assert refresh_summaries([ada.id, bob.id, cid.id, ada.id, None, 999999]) == 3
    db.session.commit()
    rows = {c.email: c for c in db.session.scalars(select(Contact))}
    assert (rows["ada@x.test"].lifetime_value, rows["ada@x.test"].lifetime_currency) == (700, "eur")
    assert rows["ada@x.test"].subscription_status == "TRIALING"   # active beats trialing beats failed
    assert rows["ada@x.test"].last_payment_at == datetime(2026, 5, 10, 12)
    assert (rows["bob@x.test"].lifetime_value, rows["bob@x.test"].lifetime_currency) == (1500, "usd")
    assert rows["bob@x.test"].subscription_status == "ACTIVE"
    assert rows["bob@x.test"].last_payment_at == datetime(2026, 2, 1)
    assert (rows["cid@x.test"].lifetime_value, rows["cid@x.test"].lifetime_currency) == (0, None)
    assert rows["cid@x.test"].subscription_status is None
    assert rows["cid@x.test"].last_payment_at == datetime(2026, 5, 9, 12)
    assert rows["ada@x.test"].updated_at == before  # derived figures do not count as an edit
    assert refresh_summaries([ada.id, bob.id, cid.id]) == 0  # nothing changed: nothing written

    html = auth_client.get("/contacts?sort=-lifetime_value").get_data(as_text=True)
    assert re.findall(r'/contacts/\d+">([^<]+)</a>', html) == ["bob@x.test", "ada@x.test", "cid@x.test"]
    assert "€7.00" in html and "$15.00" in html and ">Trialing</span>" in html and "2026-05-10" in html

    # Bob's subscription ends and his records go: the figures follow.
    db.session.execute(text("DELETE FROM ecommerce_customers WHERE contact_id = :c"), {"c": bob.id})
    db.session.execute(text("UPDATE recurring_payments SET status = 'CANCELLED' WHERE contact_id = :c"), {"c": bob.id})
    refresh_summaries([bob.id])
    db.session.commit()
    bob = db.session.get(Contact, bob.id)
    assert (bob.lifetime_value, bob.lifetime_currency, bob.last_payment_at, bob.subscription_status) == (
        0, None, None, "CANCELLED")


def test_the_session_knows_whose_figures_it_changed(db):
    us = _account(db, "acct_moves")
    ada, bob = (service.save_contact(None, {"email": e}) for e in ("ada@moves.test", "bob@moves.test"))
    payment = RecurringPayment(account_id=us, contact_id=ada.id, external_id="sub_move", status="ACTIVE",
                               stripe_status="active")
    db.session.add(payment)
    db.session.commit()
    assert contacts_changed_in_session() == set()
    assert payment.contact_id == ada.id  # loaded, as the sync loads a row before it changes it
    payment.contact_id = bob.id  # the subscription moves to Bob: both contacts' figures change
    assert contacts_changed_in_session() == {ada.id, bob.id}
    refresh_summaries(contacts_changed_in_session())
    db.session.commit()
    assert contacts_changed_in_session() == set()  # a new transaction starts clean
    assert db.session.get(Contact, bob.id).subscription_status == "ACTIVE"
    assert db.session.get(Contact, ada.id).subscription_status is None


def test_the_migration_fills_contacts_that_already_have_stripe_data(app, db):
    from flask_migrate import downgrade, upgrade

    directory = str(ROOT / "migrations")
    db.session.remove()
    downgrade(directory=directory, revision="0011_customer_identity")
    now = datetime(2026, 6, 1)
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO contacts (id, email, email_lower, first_name, last_name, phone, name_key, last_key, "
            "created_at, updated_at) VALUES (1001, 'Old@Buyer.test', 'old@buyer.test', 'Olga', 'Nunez', '', "
            "'olga nunez', 'nunez', :t, :t), (1002, 'none@x.test', 'none@x.test', '', '', '', '', '', :t, :t)"),
            {"t": now})
        conn.execute(text(
            "INSERT INTO stripe_accounts (id, stripe_account_id, livemode, status, connected_at, created_at, "
            "events_recovered, events_last_recovered) VALUES (1001, 'acct_old', false, 'connected', :t, :t, 0, 0)"),
            {"t": now})
        conn.execute(text(
            "INSERT INTO ecommerce_customers (account_id, contact_id, total_revenue, total_orders, currency, "
            "last_order_at, created_at, updated_at) VALUES (1001, 1001, 4200, 2, 'gbp', :o, :t, :t)"),
            {"o": datetime(2026, 4, 1), "t": now})
        conn.execute(text(
            "INSERT INTO recurring_payments (account_id, contact_id, external_id, status, stripe_status, "
            "source_event_created, source_event_row_id, created_at, updated_at) VALUES "
            "(1001, 1001, 'sub_a', 'PAUSED', 'paused', 0, 0, :t, :t), "
            "(1001, 1001, 'sub_b', 'CANCELLED', 'canceled', 0, 0, :t, :t)"),
            {"t": now})
        conn.execute(text(
            "INSERT INTO stripe_events (account_id, stripe_event_id, type, created, livemode, payload, status, "
            "historical, recovered, attempts, contact_id, received_at) VALUES "
            "(1001, 'evt_old', 'charge.succeeded', :c, false, '{}', 'processed', false, false, 1, 1001, :t)"),
            {"c": int((datetime(2026, 4, 20, 8, 30) - datetime(1970, 1, 1)).total_seconds()), "t": now})
    upgrade(directory=directory, revision="heads")
    db.session.remove()
    olga, empty = db.session.get(Contact, 1001), db.session.get(Contact, 1002)  # ids the sequence never gives
    assert (olga.lifetime_value, olga.lifetime_currency, olga.subscription_status) == (4200, "gbp", "PAUSED")
    assert olga.last_payment_at == datetime(2026, 4, 20, 8, 30)
    assert (empty.lifetime_value, empty.lifetime_currency, empty.last_payment_at, empty.subscription_status) == (
        0, None, None, None)
    # Existing contacts are searchable at once, and the index follows rows added afterwards.
    assert [c.email for c in service.search_contacts("unez").items] == ["Old@Buyer.test"]
    service.save_contact(None, {"email": "new@buyer.test", "first_name": "Nina", "last_name": "Nunez"})
    assert service.search_contacts("unez").total == 2
