"""Domain rules for contacts, fields and tags, on a real migrated database."""
import pytest

from webapp.crm import hooks, service
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


@pytest.fixture
def hook():
    """Register a test's own hook and take it out again, so later apps see only the real ones."""
    added = []

    def add(registry, fn):
        added.append((registry, registry.register(fn)))
        return fn

    yield add
    for registry, fn in added:
        registry.unregister(fn)


def test_a_registered_veto_refuses_a_delete_and_keeps_the_values(db, hook):
    f = service.create_field("Plan", "text")
    c = service.save_contact(None, {"email": "v@example.com"}, {f.id: "pro"})
    cleaned = []
    hook(hooks.field_deletion_vetoes, lambda field: f"“{field.label}” is still needed elsewhere.")
    hook(hooks.field_deletion_cleanups, cleaned.append)
    with pytest.raises(service.ValidationError) as exc:
        service.delete_field(f)
    assert exc.value.errors == {"field": "“Plan” is still needed elsewhere."}
    assert cleaned == []
    db.session.rollback()
    assert [x.label for x in service.custom_fields()] == ["Plan"]
    assert service.custom_values(db.session.get(Contact, c.id)) == {f.id: "pro"}


def test_vetoes_that_let_a_field_go_run_its_cleanups_first(db, hook):
    f = service.create_field("Plan", "text")
    seen = []
    hook(hooks.field_deletion_vetoes, lambda field: seen.append(("veto", field.label)))
    hook(hooks.field_deletion_cleanups, lambda field: seen.append(("cleanup", field.label)))
    service.delete_field(f)
    assert seen == [("veto", "Plan"), ("cleanup", "Plan")]
    assert service.custom_fields() == []


def test_registering_hooks_again_adds_nothing(app):
    from webapp import register_hooks

    before = {name: list(getattr(hooks, name)) for name in
              ("field_deletion_vetoes", "field_deletion_cleanups", "account_namers", "contact_sections")}
    assert all(len(fns) == 1 for fns in before.values())
    register_hooks(app)
    register_hooks(app)
    assert {name: list(getattr(hooks, name)) for name in before} == before
