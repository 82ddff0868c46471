"""Domain rules for contacts, fields and tags, on a real migrated database."""
import pytest

from webapp.crm import service
from webapp.crm.models import Contact, ContactField


def test_standard_fields_exist_after_migration(db):
    labels = [f.label for f in service.all_fields() if f.is_standard]
    assert labels == ["Email", "First Name", "Last Name", "Phone"]


def test_contact_email_unique_regardless_of_case(db):
    service.save_contact(None, {"email": "Ada@Example.com", "first_name": "Ada"})
    with pytest.raises(service.ValidationError) as exc:
        service.save_contact(None, {"email": "ada@EXAMPLE.com"})
    assert exc.value.errors == {"email": "A contact with this email already exists."}
    assert db.session.query(Contact).count() == 1


@pytest.mark.parametrize("raw,message", [
    ("", "Email is required."),
    ("not-an-email", "Enter a valid email address, like name@example.com."),
])
def test_contact_email_required_and_valid(db, raw, message):
    with pytest.raises(service.ValidationError) as exc:
        service.save_contact(None, {"email": raw})
    assert exc.value.errors["email"] == message


def test_search_matches_email_and_name_prefixes(db):
    service.save_contact(None, {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"})
    service.save_contact(None, {"email": "grace@navy.test", "first_name": "Grace", "last_name": "Hopper"})
    assert [c.email for c in service.search_contacts("ADA").items] == ["ada@example.com"]
    assert [c.email for c in service.search_contacts("hopp").items] == ["grace@navy.test"]
    assert [c.email for c in service.search_contacts("grace hop").items] == ["grace@navy.test"]
    assert service.search_contacts("zzz").total == 0
    assert service.search_contacts("").total == 2


def test_tag_filter_and_pagination(db):
    for i in range(7):
        c = service.save_contact(None, {"email": f"p{i}@example.com"})
        if i % 2 == 0:
            service.add_tag(c, "VIP")
    db.session.commit()
    vip = db.session.query(service.Tag).one()
    page = service.search_contacts(tag_id=vip.id, per_page=3)
    assert page.total == 4 and page.pages == 2 and len(page.items) == 3
    assert [c.email for c in service.search_contacts(page=3, per_page=3).items] == ["p0@example.com"]


def test_adding_a_tag_twice_keeps_one(db):
    c = service.save_contact(None, {"email": "t@example.com"})
    service.add_tag(c, "customer")
    service.add_tag(c, "Customer")
    db.session.commit()
    assert [t.name for t in c.tags] == ["customer"]
    assert service.tags_with_counts()[0][1] == 1


def test_custom_field_rules(db):
    with pytest.raises(service.ValidationError) as exc:
        service.create_field("email", "text")
    assert "standard field" in exc.value.errors["label"]
    with pytest.raises(service.ValidationError) as exc:
        service.create_field("Plan", "dropdown", "")
    assert "option" in exc.value.errors["options"]
    age = service.create_field("Age", "number")
    with pytest.raises(service.ValidationError) as exc:
        service.create_field("age", "text")
    assert "already exists" in exc.value.errors["label"]
    with pytest.raises(service.ValidationError) as exc:
        service.save_contact(None, {"email": "n@example.com"}, {age.id: "forty"})
    assert exc.value.errors == {f"custom_{age.id}": "Age must be a number."}
    c = service.save_contact(None, {"email": "n@example.com"}, {age.id: "42"})
    assert service.custom_values(c) == {age.id: "42"}


def test_rename_and_delete_custom_field_keeps_standard_ones(db):
    f = service.create_field("Plan", "dropdown", "Free\nPro\nPro\n")
    assert f.options == ["Free", "Pro"]
    service.rename_field(f, "Tier")
    assert db.session.get(ContactField, f.id).label == "Tier"
    email = next(x for x in service.all_fields() if x.key == "email")
    with pytest.raises(service.ValidationError):
        service.delete_field(email)
    service.delete_field(f)
    assert [x.label for x in service.custom_fields()] == []
