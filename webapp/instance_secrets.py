"""Secrets that a local run generates once into instance/ so restarts keep sessions and data readable."""
import logging
import os
import secrets
import stat
from pathlib import Path

from cryptography.fernet import Fernet

log = logging.getLogger(__name__)


def private_dir(path) -> Path:
    """Create a folder only its owner can enter (it holds the database, Redis's files and the keys), and
    tighten one an older version left world-readable."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner_only(path)
    return path


def owner_only(path) -> None:
    """Drop the group and other permissions of a file or folder; one we cannot change is left, with a warning."""
    info = os.stat(path)
    current = stat.S_IMODE(info.st_mode)
    if current & 0o077 == 0:
        return
    try:
        if info.st_uid != os.getuid():
            raise PermissionError("owned by another user")
        os.chmod(path, current & ~0o077)
    except OSError as exc:
        log.warning("%s is open to other users (%o) and could not be made owner-only: %s", path, current, exc)
    else:
        log.info("%s was open to other users (%o); made it owner-only", path, current)


def _load_or_create(path: Path, make) -> str:
    """Read a secret file, creating it with owner-only permissions the first time."""
    private_dir(path.parent)
    try:
        value = path.read_text().strip()
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
    owner_only(path)
    return value


def secret_key(instance_path) -> str:
    """Flask's SECRET_KEY when the environment gives none."""
    return _load_or_create(Path(instance_path) / "secret_key", lambda: secrets.token_urlsafe(48))


def encryption_key(instance_path) -> str:
    """The Fernet key for stored Stripe secrets when ENCRYPTION_KEY is unset."""
    return _load_or_create(Path(instance_path) / "encryption_key", lambda: Fernet.generate_key().decode())
