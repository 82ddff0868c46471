"""A resource's setup on the Stripe page: its webhook URL (with Copy), "Send a test event", and the
signing secret `stripe listen` prints for local development; and whether its first event came."""
import logging
from datetime import datetime

from flask import abort, render_template, request
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.stripe_app.blueprint import bp
from webapp.stripe_sync.connect import local_secret, test_event
from webapp.stripe_sync.models import ACCOUNT_CONNECTED, RESOURCE_DISCONNECTED, StripeEvent, StripeResource
from webapp.webhooks import intake

log = logging.getLogger(__name__)


@bp.app_template_global("first_event_at")
def first_event_at(res: StripeResource) -> datetime | None:
    """When Stripe's first delivery (or recovered event) for the resource arrived; None: still waiting."""
    if res.last_event_at is None:
        return None
    return db.session.scalar(select(func.min(StripeEvent.received_at)).where(
        StripeEvent.resource_id == res.id, StripeEvent.historical.is_(False)))


bp.app_template_global("cli_secret")(local_secret.cli_secret)


def _resource_or_404(resource_id: int) -> StripeResource:
    """A resource still shown on the page."""
    res = db.get_or_404(StripeResource, resource_id)
    if res.status == RESOURCE_DISCONNECTED or res.account.status != ACCOUNT_CONNECTED:
        abort(404)
    return res


def _setup(res: StripeResource, note: str | None = None, error: str | None = None, status: int = 200):
    """The resource's setup fragment as it is now."""
    db.session.refresh(res)
    return render_template("apps/_resource_setup.html", res=res, note=note, error=error), status


@bp.route("/stripe/resources/<int:resource_id>/test-event", methods=["POST"])
def resource_test_event(resource_id):
    """"Send a test event": a signed sample through our own intake, as Stripe would deliver it."""
    res = _resource_or_404(resource_id)
    try:
        body, signature = test_event.build(res)
    except test_event.NoSigningSecret as exc:
        return _setup(res, error=str(exc), status=409)
    info = intake.endpoint(res.token)
    reply = info if isinstance(info, intake.Reply) else intake.deliver(res.token, info, body, signature)
    if reply.status != 200:
        log.warning("Test event for resource %s refused: %s", res.id, reply.body)
        return _setup(res, error=f"The test event was refused: {reply.body.get('error', reply.status)}.", status=409)
    return _setup(res, note=f"Test event sent as {test_event.TEST_NAME} ({test_event.TEST_EMAIL}). "
                            "It appears in the sync log below within seconds.")


@bp.route("/stripe/resources/<int:resource_id>/cli-secret", methods=["POST"])
def resource_cli_secret(resource_id):
    """Accept deliveries `stripe listen` forwards, signed with the secret it printed."""
    res = _resource_or_404(resource_id)
    try:
        local_secret.save(res, request.form.get("secret"))
    except local_secret.BadSecret as exc:
        return _setup(res, error=str(exc), status=422)
    intake.forget(res.token)
    return _setup(res, note="Saved. Deliveries forwarded by stripe listen are accepted now.")


@bp.route("/stripe/resources/<int:resource_id>/cli-secret/remove", methods=["POST"])
def resource_cli_secret_remove(resource_id):
    """Stop accepting what `stripe listen` signs."""
    res = _resource_or_404(resource_id)
    local_secret.remove(res)
    intake.forget(res.token)
    return _setup(res, note="Removed. Only deliveries from Stripe's endpoint are accepted now.")
