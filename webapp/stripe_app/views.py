"""Apps catalogue, Connected Apps, and the Stripe app page with its connect flow (htmx fragments)."""
import logging

from flask import Blueprint, abort, flash, make_response, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from webapp import apps_registry
from webapp.extensions import db
from webapp.crypto import decrypt
from webapp.settings.views import public_base_configured, public_base_url
from webapp.stripe_sync.connect import endpoints as provisioning, flow
from webapp.stripe_sync.client import StripeProblem, client_for_account, describe, make_client
from webapp.stripe_sync.events import resource_choices
from webapp.stripe_sync.connect.fields import NAME_SPLIT_NOTE
from webapp.stripe_sync.connect.mapping import ROLE_EXTRA, MappingRow, choices, default_rows, rows_from_form
from webapp.stripe_sync.models import ACCOUNT_CONNECTED, SYNC_TYPES, StripeAccount, StripeResource

log = logging.getLogger(__name__)
bp = Blueprint("apps", __name__, url_prefix="/apps")


def _htmx_redirect(url: str):
    """Tell htmx to load a whole page (after the flow finishes)."""
    resp = make_response("", 204)
    resp.headers["HX-Redirect"] = url
    return resp


def _modal(template: str, status: int = 200, **ctx):
    """Render a modal step into the shared <dialog>, whatever element asked for it."""
    resp = make_response(render_template(template, **ctx), status)
    resp.headers["HX-Retarget"] = "#modal"
    resp.headers["HX-Reswap"] = "innerHTML"
    return resp


def connected_accounts() -> list[StripeAccount]:
    """Accounts shown under Connected Apps, oldest first."""
    return list(db.session.scalars(select(StripeAccount).where(StripeAccount.status == ACCOUNT_CONNECTED)
                                   .order_by(StripeAccount.connected_at)))


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
    return render_template("apps/connected.html", stripe_accounts=connected_accounts())


@bp.route("/stripe")
def stripe_page():
    """The Stripe app page: empty state, or the manage page (accounts, resources, live sync log)."""
    from webapp.stripe_app.manage import log_context, resource_counts
    from webapp.stripe_sync.synclog import LogFilters

    ctx = log_context(LogFilters.from_args(request.args))
    if request.headers.get("HX-Target") == "sync-log":
        return render_template("apps/_sync_log.html", **ctx)
    accounts = ctx["log_accounts"]
    warning = provisioning.base_url_warning(public_base_url(), public_base_configured()) if accounts else None
    return render_template("apps/stripe.html", accounts=accounts, base_warning=warning,
                           counts=resource_counts(accounts), **ctx)


# --- step 1: the key -----------------------------------------------------------------------------

@bp.route("/stripe/connect", methods=["GET"])
def connect_start():
    """The "Connect Account" modal with the Secret Key field."""
    return _modal("apps/_connect_key.html")


@bp.route("/stripe/connect", methods=["POST"])
def connect_key():
    """Check the key with Stripe; errors go next to the field, and the typed key stays in the browser."""
    try:
        draft = flow.start_draft(current_user.id, request.form.get("secret_key"))
    except flow.KeyRejected as exc:
        return render_template("apps/_connect_key_error.html", error=str(exc)), 422
    except flow.AlreadyConnected as exc:
        return render_template("apps/_connect_key_error.html", error=str(exc), existing=exc.account), 422
    return _modal("apps/_connect_resource.html", draft=draft, **_resource_ctx(draft))


def _resource_ctx(draft, errors=None):
    """What the resource step needs: resources not yet connected, sync types, errors."""
    taken = flow.connected_kinds(draft.stripe_account_id)
    return {"resources": [(k, n) for k, n in resource_choices() if k not in taken],
            "sync_types": SYNC_TYPES, "errors": errors or {}}


def _draft_or_gone():
    """The draft named by the form, or a message that the flow must restart."""
    draft = flow.load_draft(request.values.get("draft"), current_user.id)
    if draft is None:
        return None, _modal("apps/_connect_expired.html", 410)
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
        return _modal("apps/_connect_resource.html", 422, draft=draft, chosen=request.form, **_resource_ctx(draft, errors))
    rows = default_rows(flow.email_field_id())
    return _modal("apps/_connect_mapping.html", **_mapping_ctx(draft, rows))


def _mapping_ctx(draft, rows, general=None, limit=None):
    """What the mapping step needs to render its rows."""
    return {"draft": draft, "rows": rows, "general": general or [], "limit": limit,
            "stripe_choices": choices(draft.metadata_keys or ()), "crm_fields": flow.crm_fields().values(),
            "name_note": NAME_SPLIT_NOTE, "email_field_id": flow.email_field_id(),
            "resource_name": dict(resource_choices()).get(draft.kind, ""),
            "base_warning": provisioning.base_url_warning(public_base_url(), public_base_configured())}


@bp.route("/stripe/mapping-row")
def mapping_row():
    """One mapping row for "Add field mapping"; with part=note, the row's note when its Stripe field changes."""
    metadata_keys = request.args.getlist("meta")
    role = request.args.get("row_role", ROLE_EXTRA)
    raw_field = request.args.get("crm_field", "")
    row = MappingRow(role if role in ("email", "id", "extra") else ROLE_EXTRA,
                     request.args.get("stripe_field", ""), int(raw_field) if raw_field.isdigit() else None)
    if row.role == "email":
        row.field_id = flow.email_field_id()
    template = "apps/_mapping_note.html" if request.args.get("part") == "note" else "apps/_mapping_row.html"
    return render_template(template, row=row, stripe_choices=choices(metadata_keys or ()),
                           crm_fields=flow.crm_fields().values(), name_note=NAME_SPLIT_NOTE,
                           email_field_id=flow.email_field_id())


# --- step 3: finish ------------------------------------------------------------------------------

@bp.route("/stripe/connect/finish", methods=["POST"])
def connect_finish():
    """Validate the mapping, create the endpoint in Stripe, store the connection."""
    draft, gone = _draft_or_gone()
    if gone:
        return gone
    if not draft.kind:
        return _modal("apps/_connect_resource.html", 422, draft=draft, chosen={}, **_resource_ctx(draft))
    rows = rows_from_form(request.form, flow.email_field_id())
    try:
        result, res = flow.finish(draft, rows, public_base_url())
    except provisioning.EndpointLimitReached as exc:
        return _modal("apps/_connect_mapping.html", 422,
                      **_mapping_ctx(draft, rows, limit=_limit_ctx(exc.endpoints)))
    except StripeProblem as exc:
        return _modal("apps/_connect_mapping.html", 422,
                      **_mapping_ctx(draft, rows, general=["There was an error saving your connection. " + exc.message]))
    except Exception:  # noqa: BLE001 - logged in connect.finish; the endpoint was removed again
        return _modal("apps/_connect_mapping.html", 422, **_mapping_ctx(
            draft, rows, general=["There was an error saving your connection. Nothing was saved; try Finish again."]))
    if res is None:
        return _modal("apps/_connect_mapping.html", 422, **_mapping_ctx(draft, result.rows, result.general))
    flash(f"Stripe is connected: {res.name} events from {res.account.email or res.account.stripe_account_id} "
          "now sync into your contacts.", "success")
    return _htmx_redirect(url_for("apps.stripe_page"))


def _limit_ctx(endpoints):
    """The endpoint-limit panel: every endpoint, ours marked, leftovers removable."""
    in_use = {r.webhook_endpoint_id: f"{r.name} ({r.account.email or r.account.stripe_account_id})"
              for r in db.session.scalars(select(StripeResource).where(StripeResource.webhook_endpoint_id.isnot(None),
                                                                        StripeResource.status != "disconnected"))}
    return provisioning.describe_endpoints(endpoints, public_base_url(), in_use)


@bp.route("/stripe/connect/endpoints/<endpoint_id>/delete", methods=["POST"])
def connect_remove_endpoint(endpoint_id):
    """Remove one of our leftover endpoints from Stripe so Finish can succeed."""
    draft, gone = _draft_or_gone()
    if gone:
        return gone
    client = draft_client(draft)
    error = None
    try:
        endpoints = provisioning.list_endpoints(client)
        infos = {i.id: i for i in _limit_ctx(endpoints)}
        info = infos.get(endpoint_id)
        if info is None:
            error = "That endpoint is already gone."
        elif not info.removable:
            error = "Only endpoints left over from this app can be removed here."
        else:
            provisioning.delete_endpoint(client, endpoint_id)
            endpoints = [e for e in endpoints if e["id"] != endpoint_id]
    except StripeProblem as exc:
        error, endpoints = exc.message, []
    except Exception as exc:  # a Stripe SDK error
        error, endpoints = describe(exc).message, []
    return render_template("apps/_endpoint_limit.html", draft=draft, limit=_limit_ctx(endpoints),
                           limit_error=error), (422 if error else 200)


def draft_client(draft):
    """An SDK client with the draft's key (new account) or the account's stored key."""
    if draft.account_id:
        return client_for_account(db.session.get(StripeAccount, draft.account_id))
    return make_client(decrypt(draft.secret_key_enc))


@bp.route("/stripe/accounts/<int:account_id>/resources/new")
def connect_new_resource(account_id):
    """"Connect a new resource" for an account already connected: straight to the resource step."""
    account = db.session.get(StripeAccount, account_id)
    if account is None or account.status != ACCOUNT_CONNECTED:
        abort(404)
    try:
        draft = flow.draft_for_account(current_user.id, account)
    except StripeProblem as exc:
        return _modal("apps/_connect_expired.html", 422, message=exc.message)
    return _modal("apps/_connect_resource.html", draft=draft, **_resource_ctx(draft))
