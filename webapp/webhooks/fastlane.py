"""A WSGI fast lane for Stripe deliveries: POST /webhooks/stripe/<token> goes straight to intake,
skipping Flask's routing, sessions, login gate, rate limiter and page hooks (none of which apply to
a signed machine-to-machine call). Intake is the one hot path of the product.

The lane reads the body itself, after intake has found the endpoint (an unknown token costs no read),
in bounded reads of at most MAX_CONTENT_LENGTH + 1 bytes, chunked or not: a larger body is a 413, which
becomes a rejected sync-log row like intake's other refusals."""
import json
import logging
import re

from werkzeug.wrappers import Response
from werkzeug.wsgi import get_content_length

from webapp.metrics import EVENTS_RECEIVED
from webapp.stripe_sync.connect.disconnect import on_resource_disconnected
from webapp.webhooks import intake

log = logging.getLogger(__name__)
PATH_RE = re.compile(r"^/webhooks/stripe/([^/]+)/?$")  # intake answers 404 to a token of the wrong length
MAX_BODY = 1024 * 1024  # when MAX_CONTENT_LENGTH is unset: Stripe events are far smaller; anything larger is not one
READ_SIZE = 64 * 1024  # one read from the server's input stream


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
        limit = self.app.config.get("MAX_CONTENT_LENGTH") or MAX_BODY
        declared = get_content_length(environ)
        token = match.group(1)
        if declared is not None and declared > limit:
            self._too_large(token, limit)
            return _json(413, {"error": "body too large"})(environ, start_response)
        with self.app.app_context():
            try:
                # The endpoint first: an unknown or closed one is answered without reading a byte of the body.
                found = intake.endpoint(token)
                if isinstance(found, intake.Reply):
                    reply = found
                else:
                    body = read_body(environ, declared, limit)
                    if body is None:
                        log.warning("Webhook for resource %s rejected: body over %s bytes", found.id, limit)
                        intake.too_large(token, limit, found)
                        return _json(413, {"error": "body too large"})(environ, start_response)
                    reply = intake.deliver(token, found, body, environ.get("HTTP_STRIPE_SIGNATURE"))
            finally:
                from webapp.extensions import db
                db.session.remove()
        EVENTS_RECEIVED.labels(result=_result(reply)).inc()
        return _json(reply.status, reply.body)(environ, start_response)

    def _too_large(self, token: str, limit: int) -> None:
        """Log a body declared too large as rejected, without reading it; the 413 goes out regardless."""
        with self.app.app_context():
            try:
                intake.too_large(token, limit)
            except Exception:  # noqa: BLE001 (only the resource lookup can fail; the log row is optional)
                log.warning("An oversized webhook delivery could not be recorded as rejected", exc_info=True)
            finally:
                from webapp.extensions import db
                db.session.remove()


def read_body(environ, declared: int | None, limit: int) -> bytes | None:
    """The body in bounded reads, never more than `limit` + 1 bytes whatever the transfer encoding; None
    when it is larger. Without a Content-Length (chunked) the stream is read only when the server ends it
    itself (`wsgi.input_terminated`: gunicorn and Werkzeug's server de-chunk it); otherwise the body is
    empty, as Werkzeug's get_input_stream has it, rather than a read that could wait forever."""
    if declared is None and "wsgi.input_terminated" not in environ:
        return b""
    stream = environ["wsgi.input"]
    want = limit + 1 if declared is None else declared
    parts, got = [], 0
    while got < want:
        part = stream.read(min(READ_SIZE, want - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return None if got > limit else b"".join(parts)


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
