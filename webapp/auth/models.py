"""The people who log in to the CRM."""
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.extensions import db
from webapp.timeutil import utcnow


class User(UserMixin, db.Model):
    """An admin of this CRM."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_lower: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Part of every session cookie's user id: raising it (logout, a new password) ends every older session.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")

    def get_id(self) -> str:
        """What the session cookie carries: the id and the session version, so older cookies stop working."""
        return f"{self.id}:{self.session_version}"

    def set_password(self, password: str) -> None:
        """Store only a salted hash."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """Compare in constant time through werkzeug."""
        return check_password_hash(self.password_hash, password)
