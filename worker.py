"""RQ worker: builds the app once and processes jobs (with the scheduler, for retries and waits).

It also runs the Stripe event sweep (webapp/stripe_sync/queue/sweep.py) on a background thread every
EVENT_SWEEP_INTERVAL seconds, and the automation sweep (webapp/automations/sweep.py: runs whose
scheduled continuation was lost, fired triggers never matched, unsent queued emails) every
AUTOMATION_SWEEP_INTERVAL seconds, so events recorded while Redis was down, or whose worker died in
the middle of a job, are queued again without anyone running a command. With several workers a
Redis lock lets one of them sweep per interval. --burst sweeps once before working instead.

A worker that is not --burst also checks every connected Stripe account for events its webhooks did
not deliver (webapp/stripe_sync/recovery/) when it starts and every RECOVERY_INTERVAL seconds.
"""
import argparse
import logging

from redis import Redis
from rq import Queue, SimpleWorker, Worker

from webapp import create_app
from webapp.gc_pauses import freeze_startup_objects
from webapp.automations import sweep as automation_sweep
from webapp.periodic import start_periodic
from webapp.redis_queue import get_queue
from webapp.stripe_sync.queue import sweep as event_sweep
from webapp.stripe_sync.recovery import schedule as recovery_schedule

log = logging.getLogger("worker")

# SimpleWorker runs each job in this process: no fork per job, so thousands of small webhook jobs
# a second are possible; the job timeout still applies. --fork picks RQ's isolating Worker.
WORKER_CLASSES = {"simple": SimpleWorker, "fork": Worker}


def _check_at_start() -> None:
    """A starting worker checks every account for missed events (it may have been down a while)."""
    try:
        recovery_schedule.check_all()
    except Exception:  # noqa: BLE001 - the periodic check tries again; the worker must start regardless
        log.exception("Checking for missed Stripe events at start failed")


def main(argv=None) -> None:
    """Parse flags and work until stopped (or until the queue is empty with --burst)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--worker-class", choices=sorted(WORKER_CLASSES), default="simple")
    parser.add_argument("--name", default=None)
    parser.add_argument("--no-sweep", action="store_true", help="do not run the Stripe event sweep")
    parser.add_argument("--no-recovery", action="store_true",
                        help="do not check Stripe for missed events (at start and every RECOVERY_INTERVAL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app()
    freeze_startup_objects()
    stops = []
    with app.app_context():
        if not args.no_sweep:
            if args.burst:
                event_sweep.sweep_unqueued()
                automation_sweep.sweep_automations()
            else:
                stops = [start_periodic(app, "Stripe event sweep", event_sweep.LOCK_KEY, "EVENT_SWEEP_INTERVAL",
                                        event_sweep.sweep_unqueued),
                         start_periodic(app, "Automation sweep", automation_sweep.LOCK_KEY,
                                        "AUTOMATION_SWEEP_INTERVAL", automation_sweep.sweep_automations)]
        if not args.burst and not args.no_recovery:
            _check_at_start()
            stops.append(start_periodic(app, "Stripe event recovery", recovery_schedule.LOCK_KEY,
                                        "RECOVERY_INTERVAL", recovery_schedule.check_all))
        # The worker blocks on Redis for minutes waiting for jobs, so its own connection has no read
        # timeout (the app's connection times out after 5 s, right for web requests and enqueues).
        conn = Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=5, socket_keepalive=True,
                              health_check_interval=30)
        queue = Queue(get_queue().name, connection=conn)
        worker = WORKER_CLASSES[args.worker_class]([queue], connection=conn, name=args.name)
        try:
            worker.work(burst=args.burst, with_scheduler=True, logging_level="INFO")
        finally:
            for stop in stops:
                stop.set()


if __name__ == "__main__":
    main()
