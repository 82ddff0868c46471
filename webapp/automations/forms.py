"""Forms for the Automations pages; the rules live in automations.service and automations.steps.

Trigger and action settings vary by kind, so their inputs are read from request.form by the views
and checked by the domain functions (one message per input, shown next to it).
"""
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import Length


class NameForm(FlaskForm):
    """An automation's name, when creating or renaming it."""

    name = StringField("Name", validators=[Length(max=200)])
