"""Settings page: users and integration addresses."""
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from webapp.auth.forms import UserForm, create_user_from
from webapp.auth.models import User
from webapp.extensions import db
from webapp.stripe_sync.connect.endpoints import base_url_warning

bp = Blueprint("settings", __name__, url_prefix="/settings")


def public_base_url() -> str:
    """Where Stripe should deliver webhooks: PUBLIC_BASE_URL or this request's own address."""
    return (current_app.config.get("PUBLIC_BASE_URL") or request.host_url).rstrip("/")


def public_base_configured() -> bool:
    """Whether an operator set PUBLIC_BASE_URL (otherwise we only guess from the request)."""
    return bool(current_app.config.get("PUBLIC_BASE_URL"))


@bp.route("/", methods=["GET", "POST"])
def index():
    """List users, add one, and show the webhook base address."""
    form = UserForm()
    status = 200
    if request.method == "POST":
        user = create_user_from(form)
        if user is not None:
            flash(f"User {user.email} can now log in.", "success")
            return redirect(url_for("settings.index"))
        status = 400
    users = db.session.scalars(select(User).order_by(User.email_lower)).all()
    return render_template("settings/index.html", form=form, users=users,
                           base_url=public_base_url(), base_url_configured=public_base_configured(),
                           base_warning=base_url_warning(public_base_url(), public_base_configured())), status
