"""`flask --app app create-user EMAIL --password PASSWORD`."""
import click
from flask.cli import with_appcontext

from webapp.auth.service import create_user
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
