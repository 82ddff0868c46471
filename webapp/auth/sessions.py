"""Sessions that end: a new session (and CSRF secret) at login, and a session version in every cookie
that logout and a password change raise, so no cookie issued before still opens a page."""
from flask import current_app, g, session
from flask_login import current_user, login_user, logout_user

from webapp.auth.models import User
from webapp.auth.service import end_sessions
from webapp.extensions import db
from webapp.numbers import whole_number


def start_session(user: User) -> None:
    """Log in on a fresh session: nothing from before login survives, the CSRF secret included."""
    _forget_session()
    login_user(user)


def end_session() -> None:
    """Log out here and everywhere: every cookie of this user issued until now stops working."""
    user = current_user._get_current_object()
    if user.is_authenticated:
        end_sessions(user)
    logout_user()
    _forget_session()


def _forget_session() -> None:
    """Empty the session, and drop the CSRF token Flask-WTF cached for this request from the old secret."""
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def load_user(session_id: str) -> User | None:
    """Flask-Login's loader: the user named by "id:version", only while that version is still current."""
    raw_id, colon, version = session_id.partition(":")
    user_id = whole_number(raw_id)
    if not colon or user_id is None:
        return None  # a cookie from before sessions carried a version
    user = db.session.get(User, user_id)
    if user is None or str(user.session_version) != version:
        return None
    return user
