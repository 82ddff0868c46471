"""Apps catalogue, Connected Apps, and the Stripe connect flow (htmx fragments)."""
import logging

from flask import abort, flash, render_template, request, url_for
from flask_login import current_user

import webapp.apps_registry as apps_registry
from webapp.htmx import htmx_redirect, modal
from webapp.settings.views import public_base_configured, public_base_url
from webapp.stripe_app.blueprint import bp
from webapp.stripe_sync.connect import flow
from webapp.stripe_sync.connect.endpoints import EndpointLimitReached, base_url_warning
from webapp.stripe_sync.client import StripeProblem
from webapp.stripe_sync.events import resource_choices
from webapp.stripe_sync.connect.mapping import default_rows, editor_context, rows_from_form
from webapp.stripe_sync.models import RESOURCE_NEEDS_ATTENTION, SYNC_TYPES

log = logging.getLogger(__name__)


@bp.route("/")
def index():
    """Searchable list of apps; htmx asks for just the list while the user types."""
    q = request.args.get("q", "")[:100]
    apps = apps_registry.search(q)
    if request.headers.get("HX-Target") == "app-list":
        return render_template("apps/_app_list.html", apps=apps, q=q)
    return render_template("apps/index.html", apps=apps, q=q)


@bp.route("/connected")
def connected():
    """Connected Apps: every app with a live connection."""
    return render_template("apps/connected.html", stripe_accounts=flow.connected_accounts())


# --- step 1: the key -----------------------------------------------------------------------------

@bp.route("/stripe/connect", methods=["GET"])
def connect_start():
    """The "Connect Account" modal with the Secret Key field."""
    return modal("apps/_connect_key.html")


@bp.route("/stripe/connect", methods=["POST"])
def connect_key():
    """Check the key with Stripe; errors go next to the field, and the typed key stays in the browser."""
    try:
        draft = flow.start_draft(current_user.id, request.form.get("secret_key"))
    except flow.KeyRejected as exc:
        return render_template("apps/_connect_key_error.html", error=str(exc)), 422
    except flow.AlreadyConnected as exc:
        return render_template("apps/_connect_key_error.html", error=str(exc), existing=exc.account), 422
    return modal("apps/_connect_resource.html", draft=draft, **_resource_ctx(draft))


def _resource_ctx(draft, errors=None):
    """What the resource step needs: resources not yet connected, sync types, errors."""
    taken = flow.connected_kinds(draft.stripe_account_id)
    return {"resources": [(k, n) for k, n in resource_choices() if k not in taken],
            "sync_types": SYNC_TYPES, "errors": errors or {}}


def _draft_or_gone():
    """The draft named by the form, or a message that the flow must restart."""
    draft = flow.load_draft(request.values.get("draft"), current_user.id)
    if draft is None:
        return None, modal("apps/_connect_expired.html", 410)
    return draft, None


# --- step 2: resource and sync type --------------------------------------------------------------

@bp.route("/stripe/connect/resource", methods=["POST"])
def connect_resource():
    """Remember resource and sync type, then show the mapping rows."""
    draft, gone = _draft_or_gone()
    if gone:
        return gone
    errors = flow.choose_resource(draft, request.form.get("kind"), request.form.get("sync_type"),
                                     request.form.get("trigger_historical") == "1")
    if errors:
        return modal("apps/_connect_resource.html", 422, draft=draft, chosen=request.form, **_resource_ctx(draft, errors))
    rows = default_rows(flow.email_field_id())
    return modal("apps/_connect_mapping.html", **_mapping_ctx(draft, rows))


def _mapping_ctx(draft, rows, general=None, limit=None):
    """What the mapping step needs to render its rows."""
    return {"draft": draft, "rows": rows, "general": general or [], "limit": limit,
            **editor_context(flow.crm_fields(), flow.email_field_id(), draft.metadata_keys or ()),
            "resource_name": dict(resource_choices()).get(draft.kind, ""),
            "base_warning": base_url_warning(public_base_url(), public_base_configured())}


# --- step 3: finish ------------------------------------------------------------------------------

@bp.route("/stripe/connect/finish", methods=["POST"])
def connect_finish():
    """Validate the mapping, create the endpoint in Stripe, store the connection."""
    draft, gone = _draft_or_gone()
    if gone:
        return gone
    if not draft.kind:
        return modal("apps/_connect_resource.html", 422, draft=draft, chosen={}, **_resource_ctx(draft))
    rows = rows_from_form(request.form, flow.email_field_id())
    try:
        result, res = flow.finish(draft, rows, public_base_url())
    except EndpointLimitReached as exc:
        return modal("apps/_connect_mapping.html", 422,
                     **_mapping_ctx(draft, rows, limit=_limit_ctx(exc.endpoints)))
    except StripeProblem as exc:
        return modal("apps/_connect_mapping.html", 422,
                     **_mapping_ctx(draft, rows, general=["There was an error saving your connection. " + exc.message]))
    except Exception:  # noqa: BLE001 - logged in flow.finish; the endpoint was removed again
        return modal("apps/_connect_mapping.html", 422, **_mapping_ctx(
            draft, rows, general=["There was an error saving your connection. Nothing was saved; try Finish again."]))
    if res is None:
        return modal("apps/_connect_mapping.html", 422, **_mapping_ctx(draft, result.rows, result.general))
    source = res.account.email or res.account.stripe_account_id
    if res.status == RESOURCE_NEEDS_ATTENTION:
        # The account is connected, but Stripe cannot deliver: say so, and where the fix is.
        flash(f"Stripe is connected, but {res.name} events from {source} cannot reach this app yet: "
              f"{res.status_reason} Use “Recreate endpoint” on the resource once Stripe can reach this app, or "
              "forward events with stripe listen and paste its signing secret under the resource.", "error")
    else:
        flash(f"Stripe is connected: {res.name} events from {source} now sync into your contacts.", "success")
    return htmx_redirect(url_for("apps.stripe_page"))


def _limit_ctx(endpoints):
    """The endpoint-limit panel: every endpoint, ours marked, leftovers removable."""
    return flow.describe_limit(endpoints, public_base_url())


@bp.route("/stripe/connect/endpoints/<endpoint_id>/delete", methods=["POST"])
def connect_remove_endpoint(endpoint_id):
    """Remove one of our leftover endpoints from Stripe so Finish can succeed."""
    draft, gone = _draft_or_gone()
    if gone:
        return gone
    error, endpoints = flow.remove_leftover_endpoint(draft, endpoint_id, public_base_url())
    return render_template("apps/_endpoint_limit.html", draft=draft, limit=_limit_ctx(endpoints),
                           limit_error=error), (422 if error else 200)


@bp.route("/stripe/accounts/<int:account_id>/resources/new", methods=["POST"])
def connect_new_resource(account_id):
    """"Connect a new resource" for an account already connected: straight to the resource step (a POST, since
    it stores a draft and calls Stripe; a GET is a 405)."""
    account = flow.connected_account(account_id)
    if account is None:
        abort(404)
    try:
        draft = flow.draft_for_account(current_user.id, account)
    except StripeProblem as exc:
        return modal("apps/_connect_expired.html", 422, message=exc.message)
    return modal("apps/_connect_resource.html", draft=draft, **_resource_ctx(draft))
