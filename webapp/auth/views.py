"""Login, logout and the one-time setup page."""
import logging

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required, login_user, logout_user

from webapp.auth.forms import LoginForm, SetupForm, create_user_from
from webapp.auth.service import authenticate, has_users, safe_next
from webapp.extensions import limiter

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)


def _login_limit():
    """Read the limit from config so tests can tighten it."""
    from flask import current_app
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    """Email and password in, a session cookie out."""
    if not has_users():
        return redirect(url_for("auth.setup"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(user)
            log.info("user %s logged in", user.id)
            return redirect(safe_next(request.args.get("next")) or url_for("crm.contacts"))
        error = "That email and password do not match an account."
        log.info("failed login attempt")
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form, error=error), status


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """Create the first admin; gone once any user exists."""
    if has_users():
        return redirect(url_for("auth.login"))
    form = SetupForm()
    user = create_user_from(form)
    if user is not None:
        login_user(user)
        flash("Welcome! Your admin account is ready.", "success")
        return redirect(url_for("crm.contacts"))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/setup.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """POST only, so a link on another site cannot log you out."""
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
