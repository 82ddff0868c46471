"""Forms for contacts, custom fields and tags; domain rules live in crm.service."""
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from webapp.crm.models import FIELD_TYPES


class ContactForm(FlaskForm):
    """Standard fields; custom values come from inputs named custom_<field id>."""

    email = StringField("Email", validators=[Length(max=320)])
    first_name = StringField("First Name", validators=[Optional(), Length(max=200)])
    last_name = StringField("Last Name", validators=[Optional(), Length(max=200)])
    phone = StringField("Phone", validators=[Optional(), Length(max=64)])


class FieldForm(FlaskForm):
    """A new custom field."""

    label = StringField("Field name")
    type = SelectField("Type", choices=[SelectChoice(key, label) for key, label in FIELD_TYPES.items()])
    options = TextAreaField("Options (one per line, for dropdowns)")


class RenameFieldForm(FlaskForm):
    """A custom field's new name."""

    label = StringField("Field name")


class TagForm(FlaskForm):
    """A tag to add to a contact."""

    tag = StringField("Add tag", validators=[Length(max=200)])
