"""The mapping rows' own htmx endpoints, shared by the connect flow and "Update field mapping": a row
rendered again when its fields change, "Create field" from a row, and "Preview with a recent customer"."""
import logging

from flask import abort, render_template, request
from flask_login import current_user

from webapp.htmx import modal
from webapp.stripe_app.blueprint import bp
from webapp.stripe_sync.connect import flow, preview
from webapp.stripe_sync.connect.mapping import (
    ROLE_EXTRA, NewField, RowGone, carry_over, create_field_in_row, editor_context, rows_from_form,
)
from webapp.numbers import whole_number

log = logging.getLogger(__name__)


def _context(metadata_keys, fields=None) -> dict:
    """What the row templates need besides the rows."""
    return editor_context(flow.crm_fields() if fields is None else fields, flow.email_field_id(), metadata_keys or ())


@bp.route("/stripe/mapping-row")
def mapping_row():
    """A row for "Add field mapping", or one re-rendered from what it posted so both selects agree (part=note: note)."""
    fields = flow.crm_fields()
    ctx = _context(request.args.getlist("meta"), fields)
    args = request.args.copy()
    if not args.getlist("row_role"):
        args.setlist("row_role", [ROLE_EXTRA])
    row = rows_from_form(args, ctx["email_field_id"])[0]
    if request.args.get("part") == "note":
        return render_template("apps/_mapping_note.html", row=row, **ctx)
    was = request.args.get("was")
    if was in ("name", "plain"):
        carry_over(row, was == "name", fields)
    create = request.args.get("create")
    if create == "open" and row.role != "email":
        row.new_field = row.new_field or NewField()
        row.focus = "new_label"
    elif create == "close":
        row.new_field, row.focus = None, "create"
    return render_template("apps/_mapping_row.html", row=row, **ctx)


@bp.route("/stripe/mapping/create-field", methods=["POST"])
def mapping_create_field():
    """"Create": every row again, so each CRM select lists the new field, selected in its row; errors stay there."""
    ctx = _context(request.form.getlist("meta"))
    rows = rows_from_form(request.form, ctx["email_field_id"])
    try:
        row, problem = create_field_in_row(rows, request.form.get("create_row"))
    except RowGone as exc:
        return render_template("apps/_mapping_rows.html", rows=rows, section_errors=[str(exc)], **ctx), 422
    if problem is None:
        log.info("custom field %s created from a mapping row", row.field_id)
        ctx = _context(request.form.getlist("meta"))  # the selects list the new field
        return render_template("apps/_mapping_rows.html", rows=rows, **ctx)
    return render_template("apps/_mapping_rows.html", rows=rows, **ctx), (409 if problem == "clash" else 422)


@bp.route("/stripe/mapping/preview", methods=["POST"])
def mapping_preview():
    """"Preview with a recent customer": the unsaved rows on the resource's newest customer, saving nothing."""
    fields = flow.crm_fields()
    rows = rows_from_form(request.form, flow.email_field_id())
    resource_id = whole_number(request.form.get("resource"))
    if request.form.get("resource") is not None:
        res = flow.connected_resource(resource_id) if resource_id else None
        if res is None:
            abort(404)
        shown = preview.preview_for_resource(res, rows, fields)
    else:
        draft = flow.load_draft(request.form.get("draft"), current_user.id)
        if draft is None:
            return modal("apps/_connect_expired.html", 410)
        shown = preview.preview_for_draft(draft, rows, fields)
    return render_template("apps/_mapping_preview.html", preview=shown)
