"""Login and first-run forms."""
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, EqualTo


class LoginForm(FlaskForm):
    """Fields "Email" and "Password", as DESIGN.md names them."""

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


