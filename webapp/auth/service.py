"""Creating users and checking credentials."""
from urllib.parse import urlsplit

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from webapp.auth.models import User
from webapp.crm.service import ValidationError, normalise_email
from webapp.extensions import db

MIN_PASSWORD = 8


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
        errors["password"] = f"Use at least {MIN_PASSWORD} characters."
    if not errors and db.session.scalar(select(User).where(User.email_lower == email.lower())):
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


def authenticate(email: str | None, password: str | None) -> User | None:
    """Return the user for these credentials, or None without saying which part was wrong."""
    email = (email or "").strip().lower()
    user = db.session.scalar(select(User).where(User.email_lower == email)) if email else None
    if user is None or not password or not user.check_password(password):
        return None
    return user


def safe_next(target: str | None) -> str | None:
    """Accept only same-site paths as a post-login redirect, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
