"""Encryption at rest for Stripe secret keys and webhook signing secrets."""
from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


class SecretUnreadable(Exception):
    """Raised when a stored secret cannot be decrypted (the ENCRYPTION_KEY changed)."""


def _fernet() -> Fernet:
    """Build the cipher from the app's key, once per app."""
    cached = current_app.extensions.get("fernet")
    if cached is None:
        cached = Fernet(current_app.config["ENCRYPTION_KEY"].encode())
        current_app.extensions["fernet"] = cached
    return cached


def encrypt(plain: str) -> str:
    """Encrypt a secret for storage."""
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    """Decrypt a stored secret; never echo it in the error."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("A stored Stripe secret could not be decrypted; check ENCRYPTION_KEY.") from None
