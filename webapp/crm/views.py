"""Contacts, fields and tags pages; thin views over crm.service."""
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from webapp.crm import history, hooks, search, service
from webapp.crm.contact_commerce import badge_class, commerce_for_contact
from webapp.crm.forms import ContactForm, FieldForm, RenameFieldForm, TagForm
from webapp.crm.models import Contact, ContactField
from webapp.extensions import db
from webapp.money import format_amount
from webapp.numbers import whole_number

bp = Blueprint("crm", __name__)


def _int_arg(name, default=None):
    """A positive id or page number from the query string; junk and crafted numbers give the default."""
    number = whole_number(request.args.get(name))
    return default if number is None else number


def _is_fragment(target: str) -> bool:
    """True when htmx asks for just this swap target."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-Target") == target


def _contact_or_404(contact_id: int) -> Contact:
    """Load a contact or answer 404."""
    return db.get_or_404(Contact, contact_id)


@bp.route("/")
def index():
    """Contacts are the home page."""
    return redirect(url_for("crm.contacts"))


@bp.route("/contacts")
def contacts():
    """The contact list; htmx asks for just the table while the user types or pages."""
    q = request.args.get("q", "")[:200]
    tag_id = _int_arg("tag")
    sort = search.parse_sort(request.args.get("sort"))
    page = service.search_contacts(q, tag_id, _int_arg("page", 1), per_page=_per_page(), sort=sort)
    ctx = {"page": page, "q": q, "tag_id": tag_id, "sort": sort, "format_amount": format_amount,
           "badge_class": badge_class}
    if _is_fragment("contact-table"):
        return render_template("crm/_contact_table.html", **ctx)
    return render_template("crm/contacts.html", tags=service.all_tags(), **ctx)


def _per_page() -> int:
    """Page size from config."""
    return current_app.config["CONTACTS_PER_PAGE"]


def _contact_form_page(form, contact, custom_errors, custom_input):
    """Render the create/edit form with what the user typed."""
    status = 400 if request.method == "POST" else 200
    return render_template("crm/contact_form.html", form=form, contact=contact,
                           fields=service.custom_fields(), custom_errors=custom_errors,
                           custom_input=custom_input), status


def _custom_input() -> dict[int, str]:
    """Custom values posted as custom_<field id>; a name with no valid id is ignored."""
    values = {}
    for key, value in request.form.items():
        field_id = whole_number(key[7:]) if key.startswith("custom_") else None
        if field_id is not None:
            values[field_id] = value
    return values


def _apply_errors(form, errors) -> dict:
    """Put standard-field errors on the form and return the custom ones."""
    custom = {}
    for name, message in errors.items():
        if hasattr(form, name):
            getattr(form, name).errors = [message]
        else:
            custom[name] = message
    return custom


@bp.route("/contacts/new", methods=["GET", "POST"])
def contact_new():
    """Create a contact by hand."""
    form = ContactForm()
    custom_input = _custom_input()
    custom_errors = {}
    if form.validate_on_submit():
        try:
            contact = service.save_contact(None, form.data, custom_input)
        except service.ValidationError as exc:
            custom_errors = _apply_errors(form, exc.errors)
        else:
            flash("Contact created.", "success")
            return redirect(url_for("crm.contact_detail", contact_id=contact.id))
    return _contact_form_page(form, None, custom_errors, custom_input)


@bp.route("/contacts/<int:contact_id>/edit", methods=["GET", "POST"])
def contact_edit(contact_id):
    """Edit a contact's standard and custom fields."""
    contact = _contact_or_404(contact_id)
    form = ContactForm(obj=contact)
    custom_input = _custom_input() if request.method == "POST" else service.custom_values(contact)
    custom_errors = {}
    if form.validate_on_submit():
        try:
            service.save_contact(contact, form.data, custom_input)
        except service.ValidationError as exc:
            db.session.rollback()
            custom_errors = _apply_errors(form, exc.errors)
        else:
            flash("Contact saved.", "success")
            return redirect(url_for("crm.contact_detail", contact_id=contact.id))
    return _contact_form_page(form, contact, custom_errors, custom_input)


@bp.route("/contacts/<int:contact_id>")
def contact_detail(contact_id):
    """Everything the CRM knows about one contact."""
    contact = _contact_or_404(contact_id)
    return render_template("crm/contact.html", contact=contact, fields=service.custom_fields(),
                           values=service.custom_values(contact), tag_form=TagForm(),
                           commerce=commerce_for_contact(contact.id), format_amount=format_amount,
                           badge_class=badge_class, sections=hooks.extra_contact_sections(contact),
                           email_changes=history.email_changes(contact.id),
                           stripe_customers=history.stripe_customer_ids(contact.id))


def _tags_fragment(contact, form=None, error=None, status=200):
    """The contact's tag list and add form, the swap target #contact-tags."""
    return render_template("crm/_contact_tags.html", contact=contact, tag_form=form or TagForm(),
                           tag_error=error), status


@bp.route("/contacts/<int:contact_id>/tags", methods=["POST"])
def contact_tag_add(contact_id):
    """Add a tag inline."""
    contact = _contact_or_404(contact_id)
    form = TagForm()
    if not form.validate_on_submit():
        return _tags_fragment(contact, form, "Tag names are at most 200 characters.", 400)
    try:
        service.add_tag(contact, form.tag.data)
        db.session.commit()
    except service.ValidationError as exc:
        db.session.rollback()
        return _tags_fragment(contact, form, exc.errors["tag"], 400)
    return _tags_fragment(contact)


@bp.route("/contacts/<int:contact_id>/tags/<int:tag_id>/delete", methods=["POST"])
def contact_tag_remove(contact_id, tag_id):
    """Remove a tag inline."""
    contact = _contact_or_404(contact_id)
    service.remove_tag(contact, tag_id)
    db.session.commit()
    return _tags_fragment(contact)


@bp.route("/fields", methods=["GET", "POST"])
def fields():
    """Standard and custom fields; create a custom one."""
    form = FieldForm()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                field = service.create_field(form.label.data, form.type.data, form.options.data)
            except service.ValidationError as exc:
                _apply_errors(form, exc.errors)
            else:
                flash(f"Field “{field.label}” created.", "success")
                return redirect(url_for("crm.fields"))
        status = 400
    return render_template("crm/fields.html", form=form, fields=service.all_fields(),
                           rename_form=RenameFieldForm()), status


def _custom_field_or_404(field_id) -> ContactField:
    """Load a field or answer 404."""
    return db.get_or_404(ContactField, field_id)


@bp.route("/fields/<int:field_id>/rename", methods=["POST"])
def field_rename(field_id):
    """Rename inline; answers the row fragment."""
    field = _custom_field_or_404(field_id)
    form = RenameFieldForm()
    error, status = None, 200
    try:
        service.rename_field(field, form.label.data)
    except service.ValidationError as exc:
        db.session.rollback()
        error, status = next(iter(exc.errors.values())), 400
    return render_template("crm/_field_row.html", field=field, rename_form=form,
                           rename_error=error, typed=form.label.data), status


@bp.route("/fields/<int:field_id>/delete", methods=["POST"])
def field_delete(field_id):
    """Delete a custom field and its values."""
    field = _custom_field_or_404(field_id)
    label = field.label
    try:
        service.delete_field(field)
    except service.ValidationError as exc:
        flash(next(iter(exc.errors.values())), "error")
    else:
        flash(f"Field “{label}” deleted.", "success")
    return redirect(url_for("crm.fields"))


@bp.route("/tags")
def tags():
    """Tags with how many contacts carry each."""
    return render_template("crm/tags.html", rows=service.tags_with_counts())

