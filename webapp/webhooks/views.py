"""POST /webhooks/stripe/<token>; exempt from CSRF and login, guarded by Stripe's signature."""
import json

from flask import Blueprint, current_app, request

from webapp.stripe_sync.queue.sweep import sweep_command
from webapp.webhooks import intake

# cli_group=None puts the blueprint's commands at the top level: `flask --app app stripe-sweep`.
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks", cli_group=None)
bp.cli.add_command(sweep_command)


@bp.post("/stripe/<token>")
def stripe_webhook(token):
    """Stripe delivers here; intake answers within milliseconds and the worker does the rest."""
    reply = intake.receive(token, request.get_data(cache=False), request.headers.get("Stripe-Signature"))
    # Plain JSON, never the HTML error pages: Stripe shows the body in its delivery log.
    return current_app.response_class(json.dumps(reply.body, separators=(",", ":")), status=reply.status,
                                      mimetype="application/json")
