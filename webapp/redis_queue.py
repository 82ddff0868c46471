"""One Redis connection and RQ queue per app, from REDIS_URL, and whether an RQ worker still lives.

A worker counts as dead when its RQ worker key has expired (no heartbeat), when it registered its
death, or, for a worker on this host, when its pid no longer exists, which spots a SIGKILL in
seconds instead of waiting for the heartbeat TTL; the sweeps ask before they requeue its job."""
import os
import socket

from flask import current_app
from redis import Redis
from rq import Queue
from rq.worker import Worker


def get_redis() -> Redis:
    """Return the app's Redis client, created on first use."""
    conn = current_app.extensions.get("redis")
    if conn is None:
        conn = Redis.from_url(current_app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5)
        current_app.extensions["redis"] = conn
    return conn


def get_queue() -> Queue:
    """Return the queue the worker listens on."""
    return Queue(current_app.config["RQ_QUEUE"], connection=get_redis())


def worker_alive(conn, worker_name: str) -> bool:
    """False when the RQ worker is known gone: key expired, death registered, or (same host) pid gone."""
    if not worker_name:
        return True  # nothing to go on; RQ's own abandoned-job cleanup will deal with it
    pid, hostname, death = conn.hmget(Worker.redis_worker_namespace_prefix + worker_name, "pid", "hostname", "death")
    if pid is None and hostname is None:
        return False
    if death:
        return False
    if hostname and hostname.decode() == socket.gethostname() and pid:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError):
            return True
    return True
