"""POST /webhooks/stripe/<token>; exempt from CSRF and login, guarded by Stripe's signature."""
from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
