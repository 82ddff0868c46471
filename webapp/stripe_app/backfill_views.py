"""The historical import's progress fragment on the Stripe page, and its Cancel and Resume buttons."""
import logging

from flask import render_template

from webapp.extensions import db
from webapp.stripe_app.blueprint import bp
from webapp.stripe_sync.history import importer
from webapp.stripe_sync.models import Backfill

log = logging.getLogger(__name__)


@bp.app_template_global("backfill_for")
def backfill_for(resource) -> Backfill | None:
    """The Stripe page asks per resource row; most resources have none."""
    return importer.latest_for(resource.id)


def _fragment(backfill_id: int, status: int = 200):
    """The progress fragment for one import, as it is now."""
    row = db.get_or_404(Backfill, backfill_id)
    db.session.refresh(row)
    return render_template("apps/_backfill_progress.html", bf=row), status


@bp.route("/stripe/backfills/<int:backfill_id>")
def backfill_progress(backfill_id):
    """Polled every 2 s while the import runs; the finished fragment stops the polling."""
    return _fragment(backfill_id)


@bp.route("/stripe/backfills/<int:backfill_id>/cancel", methods=["POST"])
def backfill_cancel(backfill_id):
    """Stop the import before its next page; what was imported stays."""
    db.get_or_404(Backfill, backfill_id)
    importer.request_cancel(backfill_id)
    return _fragment(backfill_id)


@bp.route("/stripe/backfills/<int:backfill_id>/resume", methods=["POST"])
def backfill_resume(backfill_id):
    """Continue a failed or cancelled import from its last saved page."""
    db.get_or_404(Backfill, backfill_id)
    if not importer.resume(backfill_id):
        return _fragment(backfill_id, 409)
    return _fragment(backfill_id)
