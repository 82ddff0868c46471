"""Redis down while Stripe delivers: the event is recorded, answered 2xx, and queued by the sweep later.

This module runs on a Redis of its own so stopping it cannot disturb other tests' shared server.
"""
import subprocess
import sys

import pytest
import redis
from sqlalchemy import select

from webapp.config import ROOT
from webapp.crm.service import find_contact_by_email
from webapp.embedded_redis import RedisServer
from webapp.stripe_sync.models import StripeEvent, SyncLog
from webapp.stripe_sync.queue.sweep import sweep_unqueued


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def app_config(app_config, own_redis):
    app_config["REDIS_URL"] = own_redis.url
    return app_config


def test_redis_down_during_intake_then_swept(connect_resource, post_event, run_worker, db, own_redis):
    resource = connect_resource("customer")
    own_redis.stop()
    resp = post_event(resource, "customer.created")
    assert resp.status_code == 200 and resp.get_json() == {"received": True, "queued": False}
    row = db.session.scalar(select(StripeEvent))
    assert (row.status, row.enqueued_at) == ("received", None)
    assert post_event(resource, "customer.created").get_json()["duplicate"] is True

    with pytest.raises(redis.exceptions.ConnectionError):
        sweep_unqueued(0)  # still down: the sweep fails loudly, the event stays recorded
    assert db.session.scalar(select(StripeEvent.status)) == "received"

    own_redis.start()
    assert sweep_unqueued(60).enqueued == 0  # younger than the grace period: left for now
    report = sweep_unqueued(0)
    assert (report.enqueued, report.requeued) == (1, 0)
    assert db.session.scalar(select(StripeEvent.status)) == "queued"
    assert sweep_unqueued(0).changed == 0  # its job is waiting: nothing more to do
    run_worker()
    assert db.session.scalar(select(StripeEvent.status)) == "processed"
    assert find_contact_by_email("ada@example.com") is not None
    assert db.session.scalar(select(SyncLog.outcome)) == "created"


def test_redis_flushed_loses_the_job_but_not_the_event(connect_resource, post_event, run_worker, db, own_redis):
    resource = connect_resource("customer")
    post_event(resource, "customer.created")
    redis.Redis.from_url(own_redis.url).flushdb()  # e.g. a restart without persistence
    report = sweep_unqueued(0)
    assert report.requeued == 1
    run_worker()
    assert db.session.scalar(select(StripeEvent.status)) == "processed"


def test_sweep_cli(app, connect_resource, post_event, db, own_redis):
    resource = connect_resource("customer")
    own_redis.stop()
    post_event(resource, "customer.created")
    own_redis.start()
    env = {"DATABASE_URL": app.config["DATABASE_URL"], "REDIS_URL": own_redis.url,
           "ENCRYPTION_KEY": app.config["ENCRYPTION_KEY"], "SECRET_KEY": "test", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "stripe-sweep", "--older-than", "0"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "1 enqueued" in out.stdout
    db.session.expire_all()
    assert db.session.scalar(select(StripeEvent.status)) == "queued"
