"""The ceiling for a Python WSGI stack here: a minimal Flask view that only verifies the signature."""
import stripe
from flask import Flask, request

SECRET = "whsec_bench_secret_0001"
app = Flask(__name__)


@app.post("/webhooks/stripe/<token>")
def webhook(token):
    """Verify and answer; nothing stored, nothing queued."""
    try:
        stripe.WebhookSignature.verify_header(request.get_data(as_text=True), request.headers["Stripe-Signature"],
                                              SECRET, 300)
    except (stripe.SignatureVerificationError, KeyError):
        return {"error": "bad signature"}, 400
    return {"received": True}


@app.get("/healthz")
def healthz():
    """For the harness's start-up check."""
    return {"status": "ok"}
