"""Housekeeping that every worker process offers and one runs at a time: a Redis lock per period
decides which, so several workers on several machines never sweep twice at once."""
import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta
from collections.abc import Callable

from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from webapp.extensions import db
from webapp.redis_queue import get_redis
from webapp.timeutil import utcnow
from webapp.tunables import setting

log = logging.getLogger(__name__)


def run_once_locked(lock_key: str, interval: float, task: Callable[[], object]):
    """Run the task unless another worker took this period's lock; returns its result or None."""
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not get_redis().set(lock_key, token, nx=True, ex=max(1, int(interval) - 1)):
        return None
    return task()


def start_periodic(app: Flask, name: str, lock_key: str, interval_setting: str, task: Callable[[], object]
                   ) -> threading.Event:
    """Run the task now and then every interval (a tunable) on a daemon thread; set the returned event to stop."""
    with app.app_context():
        interval = float(setting(interval_setting))
    stop = threading.Event()

    def loop():
        """One locked run per period, inside the app context, never letting an error end the thread."""
        while not stop.is_set():
            with app.app_context():
                try:
                    run_once_locked(lock_key, interval, task)
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    log.warning("%s skipped: Redis unavailable (%s)", name, type(exc).__name__)
                except Exception:
                    log.exception("%s failed", name)
                finally:
                    db.session.remove()
            stop.wait(interval)

    threading.Thread(target=loop, name=name, daemon=True).start()
    log.info("%s runs every %.0f s", name, interval)
    return stop


def grace_cutoff(grace_setting: str, older_than_seconds: float | None = None) -> datetime:
    """A sweep's horizon: what was left alone longer than the grace period (or the caller's override)."""
    grace = float(setting(grace_setting) if older_than_seconds is None else older_than_seconds)
    return utcnow() - timedelta(seconds=max(0.0, grace))
