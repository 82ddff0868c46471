"""Login and first-run forms."""
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, EqualTo

from webapp.auth.models import User
from webapp.auth.service import create_user
from webapp.crm.service import ValidationError


class LoginForm(FlaskForm):
    """Fields "Email" and "Password": the labels users (and the browser checks) look for."""

    email = EmailField("Email", validators=[DataRequired("Enter your email.")])
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])


class SetupForm(FlaskForm):
    """The first admin account."""

    email = EmailField("Email", validators=[DataRequired("Enter your email.")])
    password = PasswordField("Password", validators=[DataRequired("Choose a password.")])
    confirm = PasswordField("Confirm password", validators=[
        DataRequired("Repeat the password."), EqualTo("password", "The passwords do not match.")])


class UserForm(FlaskForm):
    """Another admin, added from Settings."""

    email = EmailField("Email", validators=[DataRequired("Enter an email.")])
    password = PasswordField("Password", validators=[DataRequired("Choose a password.")])


def create_user_from(form: SetupForm | UserForm) -> User | None:
    """The user a valid email/password form describes, or None with the refusals on its fields."""
    if not form.validate_on_submit():
        return None
    try:
        return create_user(form.email.data, form.password.data)
    except ValidationError as exc:
        for name, message in exc.errors.items():
            getattr(form, name).errors = [message]
        return None
