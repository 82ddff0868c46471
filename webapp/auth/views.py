"""Login, logout and the one-time setup page."""
import hashlib
import logging

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_limiter.util import get_remote_address
from flask_login import login_required

from webapp.auth.forms import LoginForm, SetupForm, create_user_from
from webapp.auth.service import authenticate, has_users, login_key, safe_next
from webapp.auth.sessions import end_session, start_session
from webapp.extensions import limiter

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)


def _login_limit():
    """Read the limit from config so tests can tighten it."""
    return current_app.config["LOGIN_RATE_LIMIT"]


def _refused(response) -> bool:
    """Only refused logins count toward the limits (the view answers 400 to them), never a successful one."""
    return response.status_code == 400


def _account_key() -> str:
    """The account a login names, hashed (no email in Redis): guesses spread over many addresses still add up."""
    email = login_key(request.form.get("email"))
    return "login-account:" + hashlib.sha256(email.encode()).hexdigest()


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=get_remote_address, deduct_when=_refused)
@limiter.limit(_login_limit, methods=["POST"], key_func=_account_key, deduct_when=_refused)
def login():
    """Email and password in, a session cookie out."""
    if not has_users():
        return redirect(url_for("auth.setup"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is not None:
            start_session(user)
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
        start_session(user)
        flash("Welcome! Your admin account is ready.", "success")
        return redirect(url_for("crm.contacts"))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/setup.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """POST only, so a link on another site cannot log you out; every session of this user ends with it."""
    end_session()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
