"""The sweep's judgement of whether an event's RQ job can still finish it."""
import os
import socket
import subprocess
import sys

import pytest

from webapp.redis_queue import worker_alive
from webapp.stripe_sync.queue.sweep import _why_lost

HOST = socket.gethostname()


class FakeRedis:
    """Just HMGET over worker hashes keyed by worker name."""

    def __init__(self, workers):
        self.workers = workers

    def hmget(self, key, *fields):
        worker = self.workers.get(key.rsplit(":", 1)[-1], {})
        return [worker.get(f) for f in fields]


@pytest.fixture(scope="module")
def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def conn(dead_pid):
    return FakeRedis({
        "alive": {"pid": str(os.getpid()).encode(), "hostname": HOST.encode()},
        "killed": {"pid": str(dead_pid).encode(), "hostname": HOST.encode()},
        "elsewhere": {"pid": b"1", "hostname": b"another-host"},
        "stopped": {"pid": str(os.getpid()).encode(), "hostname": HOST.encode(), "death": b"2026-01-01"},
    })


def test_worker_liveness(conn):
    assert worker_alive(conn, "alive")
    assert not worker_alive(conn, "killed")          # same host, pid gone
    assert worker_alive(conn, "elsewhere")           # another host: trust its heartbeat key
    assert not worker_alive(conn, "expired")         # key gone: no heartbeat
    assert not worker_alive(conn, "stopped")         # registered its death mid-job
    assert worker_alive(conn, "")                    # nothing to judge by: leave it to RQ


@pytest.mark.parametrize("event_status,job_status,worker,lost", [
    ("queued", None, "", True),
    ("failed", None, "", True),
    ("queued", "queued", "", False),
    ("failed", "scheduled", "", False),
    ("queued", "deferred", "", False),
    ("queued", "started", "alive", False),
    ("queued", "started", "killed", True),
    ("failed", "started", "expired", True),
    ("queued", "started", "elsewhere", False),
    ("failed", "failed", "", False),     # retries used up: waits for the Retry button
    ("queued", "failed", "", True),      # RQ gave up on it as abandoned
    ("queued", "finished", "", True),
    ("queued", "stopped", "", False),
    ("queued", "canceled", "", False),
])
def test_why_lost(conn, event_status, job_status, worker, lost):
    assert (_why_lost(conn, event_status, job_status, worker) is not None) is lost
