"""One Redis connection and RQ queue per app, from REDIS_URL."""
from flask import current_app
from redis import Redis
from rq import Queue


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
