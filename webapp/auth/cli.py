"""`flask --app app create-user EMAIL --password PASSWORD` and `flask --app app set-password EMAIL`."""
import click
from flask.cli import with_appcontext
from webapp.auth.service import change_password, create_user, user_by_email
from webapp.crm.service import ValidationError


@click.command("create-user")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@with_appcontext
def create_user_command(email, password):
    """Create a user who can log in."""
    try:
        user = create_user(email, password)
    except ValidationError as exc:
        raise click.ClickException(" ".join(exc.errors.values())) from None
    click.echo(f"Created user {user.email}")


@click.command("set-password")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@with_appcontext
def set_password_command(email, password):
    """Give a user a new password (a forgotten or leaked one); every session they had ends."""
    user = user_by_email(email)
    if user is None:
        raise click.ClickException(f"No user with the email {email}.")
    try:
        change_password(user, password)
    except ValidationError as exc:
        raise click.ClickException(" ".join(exc.errors.values())) from None
    click.echo(f"New password set for {user.email}; their sessions have ended.")
