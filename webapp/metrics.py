"""Prometheus metrics: counters and a latency histogram written where the work happens (intake,
worker), and gauges read from Redis and the database when /metrics is scraped.

Web and worker processes are separate, so with PROMETHEUS_MULTIPROC_DIR set (scripts/run sets it)
prometheus_client aggregates every process's values; without it each process reports its own."""
import hmac
import logging
import os

from flask import Blueprint, Response, abort, current_app, request
from flask_login import current_user
from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

EVENTS_RECEIVED = Counter("crm_stripe_events_received_total",
                          "Stripe deliveries answered by intake, by result", ["result"])
EVENTS_PROCESSED = Counter("crm_stripe_events_processed_total",
                           "Stripe events processed by the worker, by outcome", ["outcome"])
PROCESSING_SECONDS = Histogram("crm_stripe_event_processing_seconds", "Time to process one Stripe event",
                               buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BACKFILL_RECORDS = Counter("crm_backfill_records_total", "Historical records imported, by outcome", ["outcome"])


class LiveGauges:
    """Queue depth, events waiting for a drain and backlog age, read at scrape time (cheap: one LLEN,
    a ZCARD per drain shard, one indexed MIN)."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        from webapp.health import backlog_age_seconds, event_coverage
        from webapp.redis_queue import get_queue

        from webapp.stripe_sync.queue.pending import waiting_count

        depth = GaugeMetricFamily("crm_queue_depth", "Jobs waiting in the RQ queue")
        waiting = GaugeMetricFamily("crm_events_waiting", "Stripe events waiting for a drain job")
        age = GaugeMetricFamily("crm_oldest_unprocessed_event_age_seconds",
                                "Age of the oldest recorded Stripe event not yet processed")
        endpoints = GaugeMetricFamily("crm_stripe_endpoints_unhealthy",
                                      "Stripe webhook endpoints of connected resources that Stripe disabled or lost",
                                      labels=["state"])
        accounts = GaugeMetricFamily("crm_stripe_accounts_with_endpoint_problems",
                                     "Connected Stripe accounts with a disabled or missing webhook endpoint")
        checkpoint = GaugeMetricFamily("crm_stripe_oldest_event_checkpoint_age_seconds",
                                       "How far behind the oldest account's missed-event recovery is")
        with self.app.app_context():
            try:
                coverage = event_coverage()
                endpoints.add_metric(["disabled"], coverage.disabled_endpoints)
                endpoints.add_metric(["missing"], coverage.missing_endpoints)
                accounts.add_metric([], coverage.accounts_with_endpoint_problems)
                checkpoint.add_metric([], coverage.oldest_checkpoint_age_seconds or 0.0)
            except Exception:  # noqa: BLE001
                log.warning("metrics: event coverage unavailable")
            try:
                queue = get_queue()
                depth.add_metric([], queue.count)
                waiting.add_metric([], waiting_count(queue))
            except Exception:  # noqa: BLE001 - a scrape must not fail because Redis is down
                log.warning("metrics: queue depth unavailable")
            try:
                age.add_metric([], backlog_age_seconds() or 0.0)
            except Exception:  # noqa: BLE001
                log.warning("metrics: backlog age unavailable")
        yield depth
        yield waiting
        yield age
        yield endpoints
        yield accounts
        yield checkpoint


def _authorised() -> bool:
    """A logged-in user, or Prometheus with `Authorization: Bearer $METRICS_TOKEN`."""
    token = current_app.config.get("METRICS_TOKEN")
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    return current_user.is_authenticated


@bp.route("/metrics")
def metrics():
    """The Prometheus exposition, aggregated over processes when multiprocess mode is on."""
    if not _authorised():
        abort(401)
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY
        registry = REGISTRY
    gauges = current_app.extensions.get("live_gauges")
    data = generate_latest(registry)
    if gauges is not None:
        extra = CollectorRegistry()
        extra.register(gauges)
        data += generate_latest(extra)
    return Response(data, mimetype=CONTENT_TYPE_LATEST)
