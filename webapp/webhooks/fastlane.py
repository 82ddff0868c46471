"""A WSGI fast lane for Stripe deliveries: POST /webhooks/stripe/<token> goes straight to intake,
skipping Flask's routing, sessions, login gate, rate limiter and page hooks (none of which apply to
a signed machine-to-machine call). Intake is the one hot path of the product."""
import json
import logging
import re

from werkzeug.wrappers import Request, Response

from webapp.metrics import EVENTS_RECEIVED
from webapp.stripe_sync.connect.disconnect import on_resource_disconnected
from webapp.webhooks import intake

log = logging.getLogger(__name__)
PATH_RE = re.compile(r"^/webhooks/stripe/([^/]+)/?$")  # intake answers 404 to a token of the wrong length
MAX_BODY = 1024 * 1024  # Stripe events are far smaller; anything larger is not one


def install(app) -> None:
    """The one way Stripe deliveries reach intake, in every process that builds the app."""
    on_resource_disconnected(intake.forget)
    app.wsgi_app = WebhookFastLane(app, app.wsgi_app)


class WebhookFastLane:
    """Wraps app.wsgi_app; everything that is not a webhook POST passes through untouched."""

    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        match = PATH_RE.match(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        request = Request(environ)
        if (request.content_length or 0) > MAX_BODY:
            return _json(413, {"error": "body too large"})(environ, start_response)
        body = request.get_data(cache=False)
        with self.app.app_context():
            try:
                reply = intake.receive(match.group(1), body, request.headers.get("Stripe-Signature"))
            finally:
                from webapp.extensions import db
                db.session.remove()
        EVENTS_RECEIVED.labels(result=_result(reply)).inc()
        return _json(reply.status, reply.body)(environ, start_response)


def _result(reply) -> str:
    """A small, fixed set of labels for the received-events counter."""
    if reply.status >= 400:
        return f"rejected_{reply.status}"
    for flag in ("duplicate", "ignored"):
        if reply.body.get(flag):
            return flag
    return "queued" if reply.body.get("queued", True) else "recorded_not_queued"


def _json(status: int, body: dict) -> Response:
    """Plain JSON, never an HTML page: Stripe shows the body in its delivery log."""
    return Response(json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json")
