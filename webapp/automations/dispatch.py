"""Putting automation work on the RQ queue: entries, run continuations and email deliveries.

Jobs are named by dotted path so the web process never imports worker-only code. Run jobs carry
the run's token (its `job_id` column) and use it as the RQ job id, so the sweep can look a run's job
up and replace it; an outbox delivery's job id is derived from the message id for the same reason.
Redis errors propagate: callers decide whether the sweep will make up for them.
"""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from rq import Queue, Retry

from webapp.tunables import intervals, setting
from webapp.redis_queue import get_queue
from webapp.stripe_sync.queue.enqueue import REDIS_DOWN

log = logging.getLogger(__name__)

ENTER_JOB = "webapp.automations.jobs.enter_automations"
RUN_JOB = "webapp.automations.jobs.advance_run"
SEND_JOB = "webapp.automations.jobs.send_message"
RESULT_TTL = 0  # outcomes live in the database (runs, their log, the outbox); RQ keeps no result


def retry_policy(name: str) -> Retry | None:
    """RQ's retry with the configured backoff, or none when the list is empty."""
    waits = intervals(name)
    return Retry(max=len(waits), interval=waits) if waits else None


def new_token(run_id: int) -> str:
    """A fresh job id for a run; the run row keeps it so only this job may move the run."""
    return f"automation-run-{run_id}-{secrets.token_hex(4)}"


def message_job_id(message_id: int) -> str:
    """Deterministic, so the sweep finds a message's delivery job from the row alone."""
    return f"outbox-send-{message_id}"


def enqueue_entries(trigger_fired_ids: list[int], queue: Queue | None = None):
    """Match fired triggers against the automations, in a job."""
    return (queue or get_queue()).enqueue(
        ENTER_JOB, list(trigger_fired_ids), retry=retry_policy("AUTOMATION_RETRY_INTERVALS"),
        job_timeout=int(setting("AUTOMATION_JOB_TIMEOUT")), result_ttl=RESULT_TTL,
        description=f"enter automations for {len(trigger_fired_ids)} fired trigger(s)")


def enqueue_run(run_id: int, token: str, delay: timedelta | None = None, queue: Queue | None = None):
    """Run (or, after `delay`, resume) a run's actions; RQ's scheduler holds delayed ones."""
    queue = queue or get_queue()
    options = {"job_id": token, "retry": retry_policy("AUTOMATION_RETRY_INTERVALS"),
               "job_timeout": int(setting("AUTOMATION_JOB_TIMEOUT")), "result_ttl": RESULT_TTL,
               "description": f"automation run {run_id}"}
    if delay is not None and delay.total_seconds() > 0:
        return queue.enqueue_in(delay, RUN_JOB, run_id, token, **options)
    return queue.enqueue(RUN_JOB, run_id, token, **options)


def enqueue_send(message_id: int, queue: Queue | None = None):
    """Deliver one outbox message over SMTP, with retries."""
    return (queue or get_queue()).enqueue(
        SEND_JOB, message_id, job_id=message_job_id(message_id), retry=retry_policy("SMTP_RETRY_INTERVALS"),
        job_timeout=int(setting("SMTP_TIMEOUT")) * 3 + 10, result_ttl=RESULT_TTL,
        description=f"send outbox message {message_id}")


# How many automations are active, published in Redis so the trigger listener can skip the entry
# job when none is (most events, for a CRM that has not built any). Only "0" skips: a missing or
# stale value costs a job at worst, and triggers skipped on a stale "0" are entered by the sweep,
# which republishes the count every run.
ACTIVE_COUNT_KEY = "automations:active-count"


def publish_active_count(count: int) -> None:
    """Record the number of active automations; a Redis failure only costs the optimisation."""
    try:
        get_queue().connection.set(ACTIVE_COUNT_KEY, int(count))
    except REDIS_DOWN as exc:
        log.warning("Active automation count not published (Redis: %s)", type(exc).__name__)


def on_triggers_fired(trigger_fired_ids: list[int]) -> None:
    """The trigger listener: only Redis here, no SQL; if Redis is down the sweep catches up."""
    queue = get_queue()
    if queue.connection.get(ACTIVE_COUNT_KEY) == b"0":
        return
    enqueue_entries(trigger_fired_ids, queue)
