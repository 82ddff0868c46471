"""Apps catalogue and the Stripe app page."""
from flask import Blueprint, render_template, request

from webapp import apps_registry

bp = Blueprint("apps", __name__, url_prefix="/apps")


@bp.route("/")
def index():
    """Searchable list of apps; htmx asks for just the list while the user types."""
    q = request.args.get("q", "")[:100]
    apps = apps_registry.search(q)
    if request.headers.get("HX-Target") == "app-list":
        return render_template("apps/_app_list.html", apps=apps, q=q)
    return render_template("apps/index.html", apps=apps, q=q)


@bp.route("/stripe")
def stripe_page():
    """The Stripe app page: empty state until an account is connected."""
    return render_template("apps/stripe.html")
