"""The historical import's progress fragment on the Stripe page, its Cancel and Resume buttons, and
"Re-sync existing records"."""
import logging

from flask import render_template

from webapp.extensions import db
from webapp.stripe_app.blueprint import bp
from webapp.stripe_sync.history import importer, windows
from webapp.stripe_sync.history.importer import current_rate, stalled
from webapp.stripe_sync.models import Backfill, StripeResource

log = logging.getLogger(__name__)


@bp.app_template_global("backfill_for")
def backfill_for(resource) -> Backfill | None:
    """The Stripe page asks per resource row; most resources have none."""
    return importer.latest_for(resource.id)


@bp.app_template_global("backfill_progress")
def backfill_progress_of(bf: Backfill) -> windows.Progress:
    """Windows read of total and the time left, for the progress fragment."""
    return windows.progress(bf, current_rate(bf))


bp.app_template_global("current_rate")(current_rate)
bp.app_template_global("backfill_stalled")(stalled)


@bp.app_template_filter("duration")
def duration(seconds: float) -> str:
    """"about 3 min", "about 2 h 10 min", "under a minute"."""
    if seconds < 60:
        return "under a minute"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


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


@bp.route("/stripe/resources/<int:resource_id>/resync", methods=["POST"])
def resource_resync(resource_id):
    """Read the resource's history again with the current mapping; answers its import's row."""
    resource = db.get_or_404(StripeResource, resource_id)
    backfill = importer.resync(resource)
    if backfill is None:
        return render_template("apps/_backfill_row.html", res=resource, bf=None,
                               message="This resource is disconnected: connect it again to sync its history."), 409
    log.info("Re-sync of resource %s: import %s", resource_id, backfill.id)
    return render_template("apps/_backfill_row.html", res=resource, bf=backfill)
