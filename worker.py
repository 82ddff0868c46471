"""RQ worker: builds the app once and processes jobs (with the scheduler, for retries and waits)."""
import argparse
import logging

from rq import SimpleWorker, Worker

from webapp import create_app
from webapp.redis_queue import get_queue, get_redis

# SimpleWorker runs each job in this process: no fork per job, so thousands of small webhook jobs
# a second are possible; the job timeout still applies. --fork picks RQ's isolating Worker.
WORKER_CLASSES = {"simple": SimpleWorker, "fork": Worker}


def main(argv=None) -> None:
    """Parse flags and work until stopped (or until the queue is empty with --burst)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--worker-class", choices=sorted(WORKER_CLASSES), default="simple")
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app()
    with app.app_context():
        worker = WORKER_CLASSES[args.worker_class]([get_queue()], connection=get_redis(), name=args.name)
        worker.work(burst=args.burst, with_scheduler=True, logging_level="INFO")


if __name__ == "__main__":
    main()
