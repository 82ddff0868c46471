"""Secrets that a local run generates once into instance/ so restarts keep sessions and data readable."""
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet


def _load_or_create(path: Path, make) -> str:
    """Read a secret file, creating it with owner-only permissions the first time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = make()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
        return value
    except FileExistsError:  # pragma: no cover - lost a creation race; read the winner
        return path.read_text().strip()


def secret_key(instance_path) -> str:
    """Flask's SECRET_KEY when the environment gives none."""
    return _load_or_create(Path(instance_path) / "secret_key", lambda: secrets.token_urlsafe(48))


def encryption_key(instance_path) -> str:
    """The Fernet key for stored Stripe secrets when ENCRYPTION_KEY is unset."""
    return _load_or_create(Path(instance_path) / "encryption_key", lambda: Fernet.generate_key().decode())
