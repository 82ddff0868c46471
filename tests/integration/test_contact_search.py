"""Contact search as a marketer uses it: any part of an email or name, a Stripe customer id, short
terms, odd characters taken literally, combined with a tag, on SQLite (FTS5 trigram) and PostgreSQL
(pg_trgm)."""
import re

import pytest
from webapp.crm import search, service
from webapp.crm.models import Contact, ContactStripeCustomer
from webapp.stripe_sync.models import StripeAccount

HTMX = {"HX-Request": "true", "HX-Target": "contact-table"}


@pytest.fixture
def app_config(database_config):
    """The database alone: search needs neither Redis nor Stripe."""
    return database_config


@pytest.fixture
def people(db):
    """A handful of contacts with names and domains worth searching for."""
    rows = [("ada@analytical.example.com", "Ada", "Lovelace"), ("grace.hopper@navy.test", "Grace", "Hopper"),
            ("ana.nunez@correo.example.org", "Ana", "Nunez"), ("bob_smith@shop.test", "Bob", "Smith"),
            ("bobxsmith@shop.test", "Robert", "Small"), ("percent%off@deals.test", "Deal", "Hunter"),
            ("alan@bletchley.test", "Alan", "Turing")]
    made = {}
    for email, first, last in rows:
        made[email] = service.save_contact(None, {"email": email, "first_name": first, "last_name": last})
    return made


def emails(auth_client, q, **params):
    """The emails the list shows for a search, asked as htmx asks while the user types."""
    query = "&".join(f"{k}={v}" for k, v in {"q": q, **params}.items())
    resp = auth_client.get(f"/contacts?{query}", headers=HTMX)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert html.startswith('<div id="contact-table"')
    return sorted(e for e in _emails_in(html))


def _emails_in(html):
    """Email links in the table's rows."""
    return re.findall(r'/contacts/\d+">([^<]+)</a>', html)


def found(q, **kw):
    """Emails the service finds."""
    return sorted(c.email for c in service.search_contacts(q, **kw).items)


def test_the_middle_of_an_email_or_a_domain_finds_the_contact(auth_client, people):
    assert emails(auth_client, "hopper@nav") == ["grace.hopper@navy.test"]
    assert emails(auth_client, "example") == ["ada@analytical.example.com", "ana.nunez@correo.example.org"]
    assert emails(auth_client, "letchley") == ["alan@bletchley.test"]
    assert found("EXAMPLE.ORG") == ["ana.nunez@correo.example.org"]  # any case


def test_any_part_of_a_name_finds_the_contact(auth_client, people):
    assert emails(auth_client, "unez") == ["ana.nunez@correo.example.org"]
    assert found("ada lov") == ["ada@analytical.example.com"]
    assert found("  Ada   LOVE ") == ["ada@analytical.example.com"]  # spaces and case as people type them
    assert found("velac") == ["ada@analytical.example.com"]
    assert found("ring") == ["alan@bletchley.test"]
    assert found("zzz") == [] and service.search_contacts("zzz").total == 0


def test_a_stripe_customer_id_finds_the_linked_contact(auth_client, db, people):
    account = StripeAccount(stripe_account_id="acct_search", email="o@example.com")
    db.session.add(account)
    db.session.flush()
    ada, alan = people["ada@analytical.example.com"], people["alan@bletchley.test"]
    db.session.add_all([
        ContactStripeCustomer(account_id=account.id, customer_id="cus_NffrFeUfNV2Hib", contact_id=ada.id),
        ContactStripeCustomer(account_id=account.id, customer_id="cus_Q2xYz", contact_id=alan.id)])
    db.session.commit()
    assert emails(auth_client, "cus_NffrFeUfNV2Hib") == ["ada@analytical.example.com"]
    assert emails(auth_client, " cus_Nffr") == ["ada@analytical.example.com"]  # the start of an id is enough
    assert found("cus_") == ["ada@analytical.example.com", "alan@bletchley.test"]
    assert found("cus_nope") == []
    assert service.search_contacts("cus_Q2xYz").total == 1


def test_one_or_two_characters_match_the_start_of_an_email_or_name(auth_client, people):
    assert emails(auth_client, "al") == ["alan@bletchley.test"]
    assert found("a") == ["ada@analytical.example.com", "alan@bletchley.test", "ana.nunez@correo.example.org"]
    assert found("Hu") == ["percent%off@deals.test"]  # last name "Hunter"
    assert found("ng") == []  # "Turing" ends so, but two letters only match a start


def test_wildcards_and_quotes_are_taken_literally(auth_client, people):
    assert emails(auth_client, "b_s") == ["bob_smith@shop.test"]  # not bobxsmith: "_" is not "any character"
    assert emails(auth_client, "%25off") == ["percent%off@deals.test"]  # "%" typed, URL-encoded
    assert found("t%f") == []  # as a wildcard it would match "percent%off"
    assert found('"ada') == [] and found('ada"') == []
    assert found("a*") == [] and found("NEAR(ada)") == [] and found("ada OR grace") == []
    assert found("\\") == [] and found("a\\b") == []
    assert auth_client.get("/contacts?q=ada%01lov%09", headers=HTMX).status_code == 200  # control characters
    assert found("ada\x00lov") == ["ada@analytical.example.com"]  # read as a space


def test_search_combines_with_a_tag(auth_client, db, people):
    for email in ("ada@analytical.example.com", "grace.hopper@navy.test"):
        service.add_tag(people[email], "VIP")
    db.session.commit()
    vip = service.get_or_create_tag("VIP")
    assert emails(auth_client, "example", tag=vip.id) == ["ada@analytical.example.com"]
    assert found("o", tag_id=vip.id) == []  # short term + tag
    assert found("gr", tag_id=vip.id) == ["grace.hopper@navy.test"]
    page = service.search_contacts("a", tag_id=vip.id)
    assert page.total == 1 and [c.email for c in page.items] == ["ada@analytical.example.com"]
    assert service.search_contacts("example", tag_id=vip.id).total == 1


def test_the_index_follows_edits_and_deletes(db, people):
    ada = people["ada@analytical.example.com"]
    service.save_contact(ada, {"email": "countess@lovelace.test", "first_name": "Augusta", "last_name": "King"})
    assert found("analytical") == []
    assert found("untess@lov") == ["countess@lovelace.test"]
    assert found("gusta ki") == ["countess@lovelace.test"]
    assert found("velace") == ["countess@lovelace.test"]  # now in the email, no longer in the name
    db.session.delete(db.session.get(Contact, ada.id))
    db.session.commit()
    assert found("untess") == []
    assert service.search_contacts("").total == len(people) - 1


def test_matches_are_newest_first_and_paged(db):
    for n in range(7):
        service.save_contact(None, {"email": f"reader{n}@library.test", "first_name": "Reader"})
    first = service.search_contacts("brary", per_page=3)
    assert first.total == 7 and first.pages == 3
    assert [c.email for c in first.items] == ["reader6@library.test", "reader5@library.test", "reader4@library.test"]
    last = service.search_contacts("brary", page=3, per_page=3)
    assert [c.email for c in last.items] == ["reader0@library.test"]
    oldest = service.search_contacts("brary", per_page=3, sort="added")
    assert [c.email for c in oldest.items] == ["reader0@library.test", "reader1@library.test", "reader2@library.test"]


def test_the_page_says_what_it_searched(auth_client, people):
    html = auth_client.get("/contacts?q=unez").get_data(as_text=True)
    assert "1 contact matching “unez”" in html and "ana.nunez@correo.example.org" in html
    assert 'placeholder="Search by email, name or Stripe customer ID"' in html


def test_a_search_matching_most_contacts_stops_counting_and_says_so(app, auth_client, db, monkeypatch):
    # The real step is 10,000; a small one shows the same behaviour on eleven contacts.
    monkeypatch.setattr(service, "COUNT_STEP", 4)
    monkeypatch.setattr(search, "WALK_ABOVE", 2)
    for n in range(11):
        service.save_contact(None, {"email": f"reader{n}@library.test", "first_name": "Reader"})
    first = service.search_contacts("brary", per_page=3)
    assert first.capped and first.total_label == "4+" and first.pages_label == "2+" and first.has_next
    assert [c.email for c in first.items] == ["reader10@library.test", "reader9@library.test", "reader8@library.test"]
    # Asking for a page past the first count counts far enough to know the whole of it.
    third = service.search_contacts("brary", page=3, per_page=3)
    assert not third.capped and third.total_label == "11" and third.pages == 4
    assert [c.email for c in third.items] == ["reader4@library.test", "reader3@library.test", "reader2@library.test"]
    last = service.search_contacts("brary", page=4, per_page=3, sort="email")
    assert [c.email for c in last.items] == ["reader8@library.test", "reader9@library.test"]  # reader10 sorts after reader1
    assert not last.has_next
    assert service.search_contacts("re", per_page=3).total_label == "4+"  # two letters: the prefix ranges
    assert service.search_contacts("", per_page=3).total_label == "11"  # no search: always the exact number

    app.config["CONTACTS_PER_PAGE"] = 3
    html = auth_client.get("/contacts?q=brary", headers=HTMX).get_data(as_text=True)
    assert "4+ contacts matching “brary”" in html and "Page 1 of 2+" in html and "Next →" in html
    html = auth_client.get("/contacts?q=brary&page=4", headers=HTMX).get_data(as_text=True)
    assert "11 contacts matching “brary”" in html and "Page 4 of 4" in html and "Next →" not in html
