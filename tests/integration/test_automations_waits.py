"""Wait actions through RQ's scheduler, across a worker restart, and the sweep that recovers lost jobs."""
import signal
import subprocess
from datetime import timedelta

from redis.exceptions import ConnectionError as RedisConnectionError
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from tests.helpers import make_automation, start_worker, worker_env
from webapp.automations import dispatch, engine
from webapp.automations.models import AutomationRun, OutboxMessage
from webapp.automations.sweep import sweep_automations
from webapp.crm.models import TriggerFired
from webapp.crm.service import find_contact_by_email
from webapp.redis_queue import get_queue
from webapp.timeutil import utcnow
from tests.waiting import wait_for



def the_run(db):
    db.session.expire_all()
    run = db.session.scalar(select(AutomationRun))
    db.session.rollback()
    return run


def waiting_automation(amount, unit):
    """customer.updated → add tag → wait → send email → add tag."""
    return make_automation("Nudge", "stripe_event_received", {}, [
        ("add_tag", {"tag": "before-wait"}),
        ("wait", {"amount": str(amount), "unit": unit}),
        ("send_email", {"subject": "Still there, %FIRSTNAME%?", "body": "Hello again"}),
        ("add_tag", {"tag": "after-wait"})], event_types=["customer.updated"])


def scheduled(queue):
    return ScheduledJobRegistry(queue=queue).get_job_ids()


def test_a_wait_resumes_in_a_new_worker_process_after_the_first_one_stopped(app, story, db, redis_server,
                                                                           stripe_double):
    story(["customer.created"])
    waiting_automation(2, "seconds")
    story(["customer.updated"])  # the in-process burst worker runs action 1, schedules the rest, and exits

    run = the_run(db)
    assert (run.state, run.step_index) == ("waiting", 2)
    assert timedelta(seconds=0) < run.next_run_at - utcnow() <= timedelta(seconds=2)
    assert scheduled(get_queue()) == [run.job_id]
    assert db.session.scalar(select(OutboxMessage)) is None

    env = worker_env(app, redis_server.url, stripe_double)
    env.pop("SMTP_URL", None)
    # No sweep: the new worker's RQ scheduler, not the sweep, must pick the continuation up.
    worker = start_worker(env, burst=False)
    try:
        done = wait_for(lambda: the_run(db).state == "completed")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
    assert done, "the new worker never resumed the run"
    run = the_run(db)
    assert run.step_index == 4 and run.next_run_at is None
    messages = list(db.session.scalars(select(OutboxMessage)))
    assert [(m.subject, m.to_email) for m in messages] == [("Still there, Ada?", "ada@example.com")]
    assert {"before-wait", "after-wait"} <= {t.name for t in find_contact_by_email("ada@example.com").tags}
    assert [line.message for line in run.log][3:5] == ["Resumed after the wait.",
                                                        "Action 3 of 4: email “Still there, Ada?” to ada@example.com "
                                                        "stored in the outbox, not sent (no SMTP_URL configured)."]


def test_a_long_wait_whose_time_has_come_is_queued_by_the_sweep(story, db, run_worker):
    story(["customer.created"])
    waiting_automation(3, "days")
    story(["customer.updated"])
    run = the_run(db)
    old_token = run.job_id
    assert run.state == "waiting" and run.next_run_at - utcnow() > timedelta(days=2, hours=23)
    assert sweep_automations(0).changed == 0  # scheduled and not due: nothing to do

    # Three days later (no scheduler ran meanwhile): the sweep queues the overdue continuation.
    run.next_run_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    report = sweep_automations(0)
    assert report.runs == 1
    assert scheduled(get_queue()) == []  # the stale scheduled job was dropped
    assert sweep_automations(0).changed == 0  # the new job is queued; nothing twice
    run_worker()
    run = the_run(db)
    assert (run.state, run.step_index) == ("completed", 4)
    assert len(list(db.session.scalars(select(OutboxMessage)))) == 1
    assert "Requeued by the sweep: its scheduled job is overdue." in [line.message for line in run.log]
    # The old job, had it survived somewhere, finds a stale token and does nothing.
    assert engine.advance(run.id, old_token) == "superseded"
    assert len(list(db.session.scalars(select(OutboxMessage)))) == 1


def test_redis_losing_every_job_loses_no_run(story, db, run_worker, redis_server):
    import redis

    story(["customer.created"])
    waiting_automation(10, "minutes")
    story(["customer.updated"])
    redis.Redis.from_url(redis_server.url).flushdb()  # a Redis restart without persistence
    assert sweep_automations(0).changed == 0  # not due yet: nothing to do

    run = the_run(db)
    run.next_run_at = utcnow() - timedelta(seconds=1)  # ten minutes later
    db.session.commit()
    assert sweep_automations(0).runs == 1
    run_worker()
    run = the_run(db)
    assert (run.state, run.step_index) == ("completed", 4)
    assert "Requeued by the sweep: its job was missing." in [line.message for line in run.log]


def test_a_job_woken_early_reschedules_instead_of_running(story, db):
    story(["customer.created"])
    waiting_automation(1, "hours")
    story(["customer.updated"])
    run = the_run(db)
    run_id, old_token = run.id, run.job_id
    assert engine.advance(run_id, old_token) == "rescheduled"
    again = the_run(db)
    assert again.state == "waiting" and again.job_id != old_token and again.step_index == 2
    assert set(scheduled(get_queue())) == {old_token, again.job_id}  # the old one will find a stale token
    assert engine.advance(run_id, old_token) == "superseded"


def test_fired_triggers_reach_the_automations_even_when_redis_was_down(story, db, run_worker, monkeypatch):
    story(["customer.created"])
    make_automation("Tagger", "stripe_event_received", {}, [("add_tag", {"tag": "seen"})],
                    event_types=["customer.updated"])

    def down(*_a, **_k):
        raise RedisConnectionError("Redis is down")
    monkeypatch.setattr(dispatch, "enqueue_entries", down)
    story(["customer.updated"])  # the listener's enqueue fails; the trigger row is committed
    assert db.session.scalar(select(TriggerFired).where(TriggerFired.event_type == "customer.updated"))
    assert the_run(db) is None
    monkeypatch.undo()

    assert sweep_automations(0).entered >= 1
    run_worker()
    run = the_run(db)
    assert run.state == "completed" and "seen" in {t.name for t in find_contact_by_email("ada@example.com").tags}
    assert sweep_automations(0).changed == 0


def test_a_run_whose_job_never_made_it_to_redis_is_queued_by_the_sweep(story, db, run_worker, monkeypatch):
    story(["customer.created"])
    make_automation("Tagger", "stripe_event_received", {}, [("add_tag", {"tag": "seen"})],
                    event_types=["customer.updated"])

    def down(*_a, **_k):
        raise RedisConnectionError("Redis is down")
    monkeypatch.setattr(engine, "enqueue_run", down)
    story(["customer.updated"])
    assert the_run(db).state == "running"
    monkeypatch.undo()
    assert sweep_automations(0).runs == 1
    run_worker()
    assert the_run(db).state == "completed"



def test_no_entry_job_while_nothing_is_active_and_a_stale_count_is_healed_by_the_sweep(story, db, monkeypatch,
                                                                                     run_worker):
    calls = []
    real = dispatch.enqueue_entries
    monkeypatch.setattr(dispatch, "enqueue_entries", lambda ids, queue=None: calls.append(ids) or real(ids, queue))
    redis_conn = get_queue().connection
    story(["customer.created"])  # the entry job finds nothing active and says so
    assert redis_conn.get(dispatch.ACTIVE_COUNT_KEY) == b"0" and len(calls) == 1
    story(["customer.updated"])
    assert len(calls) == 1  # skipped: nothing is active

    make_automation("Tagger", "stripe_event_received", {}, [("add_tag", {"tag": "seen"})],
                    event_types=["charge.succeeded", "charge.refunded"])
    assert redis_conn.get(dispatch.ACTIVE_COUNT_KEY) == b"1"
    story(["charge.succeeded"])
    assert len(calls) == 2 and the_run(db).state == "completed"

    redis_conn.set(dispatch.ACTIVE_COUNT_KEY, 0)  # stale (say, overwritten in a race)
    story(["charge.refunded"])
    assert len(calls) == 2 and db.session.query(AutomationRun).count() == 1
    assert sweep_automations(0).entered == 1 and redis_conn.get(dispatch.ACTIVE_COUNT_KEY) == b"1"
    run_worker()
    assert db.session.query(AutomationRun).filter_by(state="completed").count() == 2
