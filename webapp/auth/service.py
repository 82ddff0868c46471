"""Creating users, checking credentials, changing passwords."""
import secrets
from functools import cache
from urllib.parse import urlsplit

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.auth.models import User
from webapp.crm.service import ValidationError, normalise_email
from webapp.extensions import db

MIN_PASSWORD = 8
TOO_SHORT = f"Use at least {MIN_PASSWORD} characters."


def has_users() -> bool:
    """First-run setup is offered only while this is false."""
    return bool(db.session.scalar(select(exists().where(User.id.isnot(None)))))


def create_user(email: str | None, password: str | None) -> User:
    """Create a login with a hashed password; the email is unique regardless of case."""
    errors = {}
    try:
        email = normalise_email(email)
    except ValidationError as exc:
        errors.update(exc.errors)
    if not password or len(password) < MIN_PASSWORD:
        errors["password"] = TOO_SHORT
    if not errors and user_by_email(email) is not None:
        errors["email"] = "A user with this email already exists."
    if errors:
        raise ValidationError(errors)
    user = User(email=email, email_lower=email.lower())
    user.set_password(password)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ValidationError({"email": "A user with this email already exists."}) from None
    return user


def login_key(email: str | None) -> str:
    """An email as login matches it: what the per-account login limit counts."""
    return (email or "").strip().lower()


def user_by_email(email: str | None) -> User | None:
    """The account an email names, matched as login matches it."""
    key = login_key(email)
    return db.session.scalar(select(User).where(User.email_lower == key)) if key else None


def authenticate(email: str | None, password: str | None) -> User | None:
    """Return the user for these credentials, or None without saying which part was wrong."""
    user = user_by_email(email)
    if not password:
        return None
    if user is None:
        # The same hash check as for a real user, so the answer's timing does not tell which emails exist.
        check_password_hash(_dummy_hash(), password)
        return None
    return user if user.check_password(password) else None


@cache
def _dummy_hash() -> str:
    """A hash of a random password, made as real ones are (same algorithm and cost), once per process."""
    return generate_password_hash(secrets.token_urlsafe(16))


def change_password(user: User, password: str | None) -> None:
    """Set a new password and end every session the user had (cookies issued before stop working)."""
    if not password or len(password) < MIN_PASSWORD:
        raise ValidationError({"password": TOO_SHORT})
    user.set_password(password)
    end_sessions(user)


def end_sessions(user: User) -> None:
    """Raise the user's session version and commit: every cookie issued before now opens nothing."""
    user.session_version = User.session_version + 1  # counted in SQL, so two logouts at once both count
    db.session.commit()


def safe_next(target: str | None) -> str | None:
    """Accept only same-site paths as a post-login redirect, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
