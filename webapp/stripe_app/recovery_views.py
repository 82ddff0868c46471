"""Missed events and endpoint health on the Stripe page: "Check for missed events", the 30-day gap's
"Run historical sync", and an endpoint's "Re-enable", "Recreate endpoint" and "Update URL".

What could not be done (Stripe refused or was unreachable, the job queue is down) answers 409 with the
fragment saying why, since htmx swaps 4xx answers and not 5xx ones (base.html's htmx-config)."""
import logging

from flask import abort, render_template
from redis.exceptions import RedisError

from webapp.extensions import db
from webapp.settings.views import public_base_url
from webapp.stripe_app.blueprint import bp
from webapp.stripe_sync.client import StripeProblem
from webapp.stripe_sync.models import ACCOUNT_CONNECTED, StripeAccount, StripeResource
from webapp.stripe_sync.recovery import endpoint_health, recover, schedule
from webapp.timeutil import from_epoch_naive
from webapp.webhooks import intake

log = logging.getLogger(__name__)


@bp.app_template_global("recovery_state")
def recovery_state(account: StripeAccount) -> str | None:
    """"queued" / "running" while the account's check waits or runs (the fragment then polls)."""
    try:
        return schedule.state(account.id)
    except RedisError:
        return None


bp.app_template_global("endpoint_url_mismatch")(endpoint_health.url_mismatch)


@bp.app_template_filter("epoch_date")
def epoch_date(seconds: int | None) -> str:
    """Stripe's epoch seconds as the page's dates ("2026-10-01 14:05 UTC")."""
    return from_epoch_naive(seconds).strftime("%Y-%m-%d %H:%M UTC") if seconds else ""


def _account_or_404(account_id: int) -> StripeAccount:
    """A connected account, or 404."""
    account = db.get_or_404(StripeAccount, account_id)
    if account.status != ACCOUNT_CONNECTED:
        abort(404)
    return account


def _resource_or_404(resource_id: int) -> StripeResource:
    """A resource of a connected account, or 404."""
    res = db.get_or_404(StripeResource, resource_id)
    _account_or_404(res.account_id)
    return res


def _recovery_fragment(account: StripeAccount, note: str | None = None, error: str | None = None,
                       status: int = 200):
    """The account's missed-events box as it is now."""
    db.session.refresh(account)
    return render_template("apps/_account_recovery.html", account=account, note=note, error=error), status


def _queue_check(account_id: int) -> str | None:
    """Queue a check; the error to show when Redis is down."""
    try:
        schedule.request_check(account_id)
    except RedisError:
        log.warning("Check for missed events of account %s not queued: Redis unavailable", account_id)
        return "The check could not be queued: the job queue is unavailable. It runs at the next interval."
    return None


@bp.route("/stripe/accounts/<int:account_id>/recovery")
def account_recovery(account_id):
    """Polled every 2 s while a check runs; the finished box stops the polling."""
    return _recovery_fragment(_account_or_404(account_id))


@bp.route("/stripe/accounts/<int:account_id>/recovery", methods=["POST"])
def account_recovery_check(account_id):
    """"Check for missed events": queue the account's check now."""
    account = _account_or_404(account_id)
    error = _queue_check(account.id)
    return _recovery_fragment(account, error=error, status=409 if error else 200)


@bp.route("/stripe/accounts/<int:account_id>/history", methods=["POST"])
def account_rerun_history(account_id):
    """"Run historical sync" for a gap older than Stripe keeps events."""
    account = _account_or_404(account_id)
    try:
        started = recover.rerun_history(account.id)
    except RedisError:
        db.session.rollback()
        return _recovery_fragment(account, error="The historical sync could not be queued: the job queue is "
                                                 "unavailable. Try again in a moment.", status=409)
    note = (f"Historical sync started for {started} resource(s); its progress shows below each resource. "
            "Reload the page to follow it.") if started else "A historical sync is already running."
    return _recovery_fragment(account, note=note)


def _health_fragment(res: StripeResource, note: str | None = None, error: str | None = None, status: int = 200):
    """The resource's status cell as it is now."""
    db.session.refresh(res)
    return render_template("apps/_resource_status.html", res=res, note=note, error=error), status


def _repair(resource_id: int, action, done: str):
    """Run a repair, then check for what was missed meanwhile."""
    res = _resource_or_404(resource_id)
    try:
        action(res)
    except StripeProblem as problem:
        db.session.rollback()
        return _health_fragment(res, error=problem.message, status=409)
    error = _queue_check(res.account_id)
    return _health_fragment(res, note=done + (" " + error if error else " Checking for missed events…"))


@bp.route("/stripe/resources/<int:resource_id>/endpoint/reenable", methods=["POST"])
def endpoint_reenable(resource_id):
    """"Re-enable" an endpoint Stripe disabled after failed deliveries."""
    return _repair(resource_id, endpoint_health.reenable, "Re-enabled in Stripe.")


@bp.route("/stripe/resources/<int:resource_id>/endpoint/recreate", methods=["POST"])
def endpoint_recreate(resource_id):
    """"Recreate endpoint" for one deleted in Stripe: new endpoint, secret and URL."""
    def recreate(res):
        """Recreate, and make this process forget the old URL at once."""
        old_token = res.token
        endpoint_health.recreate(res, public_base_url())
        intake.forget(old_token)

    return _repair(resource_id, recreate, "A new endpoint was created in Stripe.")


@bp.route("/stripe/resources/<int:resource_id>/endpoint/url", methods=["POST"])
def endpoint_update_url(resource_id):
    """"Update URL": point the endpoint at this app's address."""
    return _repair(resource_id, lambda res: endpoint_health.update_url(res, public_base_url()),
                   "Stripe now sends this resource's events here.")
