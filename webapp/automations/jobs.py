"""RQ job functions for automations: take ids, load rows, do the work, re-raise on failure.

Enqueued by dotted path (see dispatch.py). Each runs in webapp.jobs.job_context.
"""
import logging

from webapp.jobs import job_context

log = logging.getLogger(__name__)


def _will_retry() -> bool:
    """Whether RQ runs this job again after this failure."""
    from rq import get_current_job

    job = get_current_job()
    return bool(job is not None and job.retries_left)


def enter_automations(trigger_fired_ids: list[int]) -> int:
    """Start runs for fired triggers; how many started."""
    from webapp.automations.engine import enter

    with job_context():
        return len(enter(trigger_fired_ids))


def advance_run(run_id: int, token: str) -> str:
    """Run a run's actions until it waits, pauses or ends; failures are recorded, then re-raised."""
    from webapp.automations.engine import advance, record_failure

    with job_context():
        try:
            return advance(run_id, token)
        except Exception as exc:
            record_failure(run_id, token, exc, _will_retry())
            raise


def send_message(message_id: int) -> str:
    """Deliver one outbox message over SMTP; failures re-raise so RQ retries."""
    from webapp.automations.outbox import send

    with job_context():
        return send(message_id)
