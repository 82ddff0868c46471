"""The Stripe manage page and its actions: live sync log (search, filters, CSV export), retry, mapping
updates, disconnects."""
import json
import logging

from flask import Response, abort, flash, make_response, render_template, request, stream_with_context, url_for

from webapp.extensions import db
from webapp.htmx import htmx_redirect, modal
from webapp.numbers import whole_number
from webapp.stripe_app.blueprint import bp
from webapp.stripe_sync import logtext, synclog
from webapp.stripe_sync.connect import disconnect, flow
from webapp.stripe_sync.client import StripeProblem
from webapp.stripe_sync.events import ALL_EVENT_TYPES
from webapp.stripe_sync.connect.mapping import editor_context, rows_from_form, rows_from_mappings
from webapp.stripe_sync.models import OUTCOMES, RESOURCE_DISCONNECTED, StripeAccount, StripeResource, SyncLog
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)


@bp.route("/stripe")
def stripe_page():
    """The Stripe app page: empty state, or the manage page (accounts, resources, live sync log); a filter
    change asks for the log's results only (the search box keeps its focus), an older client the whole log."""
    ctx = log_context(synclog.LogFilters.from_args(request.args))
    target = request.headers.get("HX-Target")
    if target == "log-results":
        return render_template("apps/_sync_log_results.html", export_oob=True, **ctx)
    if target == "sync-log":
        return render_template("apps/_sync_log.html", **ctx)
    accounts = ctx["log_accounts"]
    return render_template("apps/stripe.html", accounts=accounts, counts=synclog.resource_counts(accounts), **ctx)


def log_context(filters: synclog.LogFilters) -> dict:
    """Everything the sync-log section renders: filters, choices, newest rows in words, poll cursor. The
    Resource filter lists each kind once, however often a resource of it was removed and connected again."""
    rows = synclog.latest(filters)
    accounts = flow.connected_accounts()
    kinds = sorted({r.kind: r.name for a in accounts for r in a.resources}.items(), key=lambda k: k[1])
    return {"filters": filters, "log_rows": rows, "notes": logtext.explain(rows),
            "poll_after": rows[0].id if rows else synclog.max_id(),
            "oldest_id": rows[-1].id if len(rows) == synclog.PAGE_SIZE else None,
            "log_accounts": accounts, "log_kinds": kinds, "outcomes": OUTCOMES,
            "event_types": (*ALL_EVENT_TYPES, synclog.IMPORT_EVENT_TYPE)}


@bp.route("/stripe/log/newer")
def log_newer():
    """The 2-second poll: rows newer than the last shown (with their resources' rows and the navigation's
    badge, out of band, so the counters move too), or 204 (one indexed query) when none."""
    filters = synclog.LogFilters.from_args(request.args)
    rows = synclog.newer(filters, whole_number(request.args.get("after")) or 0)
    if not rows:
        return make_response("", 204)
    changed = list({row.resource_id: row.resource for row in rows
                    if row.resource is not None and row.resource.status != RESOURCE_DISCONNECTED}.values())
    return render_template("apps/_sync_log_newer.html", log_rows=rows, notes=logtext.explain(rows), filters=filters,
                           poll_after=rows[0].id, changed_resources=changed,
                           counts=synclog.counts_for([r.id for r in changed]))


@bp.route("/stripe/log/older")
def log_older():
    """"Load older rows": the page before the oldest row shown."""
    filters = synclog.LogFilters.from_args(request.args)
    before = whole_number(request.args.get("before"), minimum=0)
    if before is None:
        abort(400)
    rows = synclog.older(filters, before)
    return render_template("apps/_sync_log_older.html", log_rows=rows, notes=logtext.explain(rows), filters=filters,
                           oldest_id=rows[-1].id if len(rows) == synclog.PAGE_SIZE else None)


@bp.route("/stripe/log/export.csv")
def log_export():
    """"Export CSV": every row the filters match, streamed in chunks, in the words the page shows; never a payload."""
    filters = synclog.LogFilters.from_args(request.args)
    body = synclog.export_csv(filters, lambda rows: logtext.explain(rows, live=False))
    resp = Response(stream_with_context(body), mimetype="text/csv")
    resp.headers["Content-Disposition"] = f'attachment; filename="stripe-sync-log-{utcnow():%Y%m%d-%H%M%S}.csv"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/stripe/log/<int:log_id>/row")
def log_row(log_id):
    """A row as it is now, polled by a row whose state can still change (an import running, a retry due)."""
    return _row(db.get_or_404(SyncLog, log_id))


def _row(row: SyncLog, status: int = 200, message: str | None = None):
    """One log row in words, with the navigation's badge out of band."""
    return render_template("apps/_sync_log_row_alone.html", row=row, notes=logtext.explain([row]),
                           message=message), status


@bp.route("/stripe/log/<int:log_id>")
def log_detail(log_id):
    """A log row's details in plain words; the error, its frames and the event payload folded away."""
    row = db.get_or_404(SyncLog, log_id)
    event = synclog.event_for(row)
    payload = None
    if event is not None:
        try:
            payload = json.dumps(json.loads(event.payload), indent=2, ensure_ascii=False)
        except ValueError:
            payload = event.payload
    return modal("apps/_sync_log_detail.html", row=row, shown=logtext.explain([row])[row.id], event=event,
                 payload=payload)


@bp.route("/stripe/log/<int:log_id>/retry", methods=["POST"])
def log_retry(log_id):
    """Enqueue a failed event again; the row then says it waits, and links to the attempt that follows."""
    from webapp.stripe_sync.queue.enqueue import REDIS_DOWN, retry_event

    row = db.get_or_404(SyncLog, log_id)
    if not synclog.can_retry(row):
        return _row(row, 409, "Nothing to retry: this event is no longer failed.")
    try:
        queued = retry_event(row.event_row_id)
    except REDIS_DOWN:
        # The event is marked queued already; the worker's sweep enqueues it once Redis answers.
        return _row(row, message="Retry recorded; it starts as soon as the queue is reachable.")
    if not queued:
        return _row(row, 409, "Nothing to retry: this event is no longer failed.")
    log.info("retry of event row %s queued by a user", row.event_row_id)
    return _row(row, message="Retry queued: waiting for a worker…")


# --- mapping updates ------------------------------------------------------------------------------

def _resource_or_404(resource_id) -> StripeResource:
    """A resource that is still connected, or 404."""
    res = flow.connected_resource(resource_id)
    if res is None:
        abort(404)
    return res


def _mapping_editor(res, rows, status=200, general=None, metadata_keys=None):
    """The mapping modal for a connected resource."""
    metadata_keys = flow.metadata_keys_for(res) if metadata_keys is None else metadata_keys
    return modal("apps/_edit_mapping.html", status, resource=res, rows=rows, general=general or [],
                 metadata_keys=metadata_keys, **editor_context(flow.crm_fields(), flow.email_field_id(), metadata_keys))


@bp.route("/stripe/resources/<int:resource_id>/mapping", methods=["GET"])
def mapping_edit(resource_id):
    """Click a resource: its mapping rows, the same fragments as in the connect flow."""
    res = _resource_or_404(resource_id)
    return _mapping_editor(res, rows_from_mappings(res.mappings, flow.email_field_id()))


@bp.route("/stripe/resources/<int:resource_id>/mapping", methods=["POST"])
def mapping_save(resource_id):
    """"Finish": new events use the new mapping; contacts synced before change only on a re-sync."""
    res = _resource_or_404(resource_id)
    rows = rows_from_form(request.form, flow.email_field_id())
    result = flow.save_mapping(res, rows)
    if not result.ok:
        return _mapping_editor(res, result.rows, 422, result.general, request.form.getlist("meta"))
    flash(f"Field mapping for {res.name} updated. Events from now on use it; to fill it in on contacts "
          "synced before, use “Re-sync existing records”.", "success")
    return htmx_redirect(url_for("apps.stripe_page"))


# --- disconnecting --------------------------------------------------------------------------------

@bp.route("/stripe/resources/<int:resource_id>/remove", methods=["GET"])
def resource_remove_confirm(resource_id):
    """The trash icon's confirmation modal."""
    res = db.get_or_404(StripeResource, resource_id)
    return modal("apps/_remove_resource.html", resource=res)


@bp.route("/stripe/resources/<int:resource_id>/remove", methods=["POST"])
def resource_remove(resource_id):
    """"Remove": delete the endpoint in Stripe, keep all synced data."""
    res = db.get_or_404(StripeResource, resource_id)
    return _disconnect(disconnect.disconnect_resource, "apps/_remove_resource.html", resource=res,
                       unreachable="Stripe could not be reached, so the webhook endpoint may still exist. {} "
                                   "The resource stays listed as “Disconnecting” until a retry works.",
                       done=f"{res.name} was removed. Its synced contacts, tags, orders and logs stay.")


@bp.route("/stripe/accounts/<int:account_id>/disconnect", methods=["GET"])
def account_disconnect_confirm(account_id):
    """The "Disconnect Account" modal."""
    return modal("apps/_disconnect_account.html", account=db.get_or_404(StripeAccount, account_id))


@bp.route("/stripe/accounts/<int:account_id>/disconnect", methods=["POST"])
def account_disconnect(account_id):
    """"Disconnect": every resource removed, the key erased, synced data kept."""
    account = db.get_or_404(StripeAccount, account_id)
    return _disconnect(disconnect.disconnect_account, "apps/_disconnect_account.html", account=account,
                       unreachable="Not every webhook endpoint could be removed in Stripe. {} "
                                   "The account stays connected; retry when Stripe is reachable.",
                       done=f"The Stripe account {account.email or account.stripe_account_id} was disconnected. "
                            "Previously synced data stays.")


def _disconnect(action, template: str, unreachable: str, done: str, **target):
    """Run a disconnect; its confirmation modal again with why when it cannot, the page when it did."""
    (obj,) = target.values()
    try:
        action(obj)
    except disconnect.AlreadyRemoved as exc:
        return modal(template, 409, error=str(exc), gone=True, **target)
    except StripeProblem as exc:
        return modal(template, 502, error=unreachable.format(exc.message), **target)
    flash(done, "success")
    return htmx_redirect(url_for("apps.stripe_page"))
