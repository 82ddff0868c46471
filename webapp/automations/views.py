"""Automations, their editor (trigger picker, actions, email editor with preview), runs and the outbox.

Thin views over automations.service / engine / outbox. Modal steps render into the shared
<dialog>; a saved modal form answers the page fragment it changed (HX-Retarget) and closes the
dialog (HX-Trigger: closeModal); validation errors answer 422 with the form again.
"""
import logging

import click
from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for

from webapp.automations import context, matching, outbox, service, steps
from webapp.automations.forms import NameForm
from webapp.automations.models import MSG_STATES, Automation, AutomationRun, AutomationStep, OutboxMessage
from webapp.automations.personalization import render_email
from webapp.crm.models import Contact
from webapp.crm.service import ValidationError, all_tags
from webapp.extensions import db
from webapp.htmx import htmx_redirect, modal
from webapp.stripe_sync.queue.enqueue import REDIS_DOWN
from webapp.stripe_sync.models import StripeEvent
from webapp.stripe_sync.apply.triggers import TRIGGERS

log = logging.getLogger(__name__)
bp = Blueprint("automations", __name__, url_prefix="/automations")

PREVIEW_CHOICES = 50
OUTBOX_PAGE = 50


def _saved(template: str, target: str, **ctx):
    """A modal form succeeded: swap the page fragment it changed and close the dialog."""
    resp = make_response(render_template(template, **ctx))
    resp.headers["HX-Retarget"] = target
    resp.headers["HX-Reswap"] = "outerHTML"
    resp.headers["HX-Trigger"] = "closeModal"
    return resp


def _automation_or_404(automation_id: int):
    """Load an automation or answer 404."""
    return db.get_or_404(Automation, automation_id)


def _step_or_404(automation, step_id: int) -> AutomationStep:
    """Load one of this automation's actions or answer 404."""
    step = db.get_or_404(AutomationStep, step_id)
    if step.automation_id != automation.id:
        abort(404)
    return step


# --- list, create, rename, delete ---------------------------------------------------------------

@bp.route("/")
def index():
    """Every automation with its trigger, status and how many contacts entered it."""
    automations = service.all_automations()
    return render_template("automations/index.html", automations=automations,
                           counts=service.entered_counts(), describe_trigger=matching.describe)


@bp.route("/new")
def new():
    """The "New automation" modal."""
    return modal("automations/_new.html", form=NameForm())


@bp.route("/new", methods=["POST"])
def create():
    """Create it and open its editor."""
    form = NameForm()
    try:
        if not form.validate():
            raise ValidationError({"name": "Names are at most 200 characters."})
        automation = service.create(form.name.data)
    except ValidationError as exc:
        return modal("automations/_new.html", 422, form=form, error=exc.errors.get("name"))
    return htmx_redirect(url_for("automations.edit", automation_id=automation.id))


def _editor_ctx(automation) -> dict:
    """What the editor page and its fragments render."""
    runs, contacts = service.entered_counts([automation.id]).get(automation.id, (0, 0))
    return {"automation": automation, "trigger_text": matching.describe(automation.trigger_type,
                                                                        automation.trigger_config),
            "field_labels": service.field_labels(), "describe_step": steps.describe,
            "runs": service.recent_runs(automation.id), "run_count": runs, "contact_count": contacts,
            "step_kinds": steps.STEP_KINDS}


@bp.route("/<int:automation_id>")
def edit(automation_id):
    """The editor: name, status, trigger, actions and runs."""
    automation = _automation_or_404(automation_id)
    return render_template("automations/edit.html", form=NameForm(obj=automation), **_editor_ctx(automation))


@bp.route("/<int:automation_id>/rename", methods=["POST"])
def rename(automation_id):
    """Inline rename; answers the name form."""
    automation = _automation_or_404(automation_id)
    form = NameForm()
    error, status = None, 200
    try:
        service.rename(automation, form.name.data)
    except ValidationError as exc:
        db.session.rollback()
        error, status = exc.errors["name"], 422
    return render_template("automations/_name.html", automation=automation, form=form, name_error=error,
                           saved=error is None), status


@bp.route("/<int:automation_id>/delete", methods=["POST"])
def delete(automation_id):
    """Delete it, its actions and runs; the outbox keeps what was sent."""
    automation = _automation_or_404(automation_id)
    name = automation.name
    service.delete(automation)
    flash(f"Automation “{name}” deleted.", "success")
    return redirect(url_for("automations.index"))


# --- status --------------------------------------------------------------------------------------

def _status(automation, error=None, status=200):
    """The badge and Activate / Deactivate button, swapped in place."""
    return render_template("automations/_status.html", automation=automation, status_error=error), status


@bp.route("/<int:automation_id>/activate", methods=["POST"])
def activate(automation_id):
    """Start taking contacts (from now on)."""
    automation = _automation_or_404(automation_id)
    try:
        service.activate(automation)
    except ValidationError as exc:
        return _status(automation, exc.errors["active"], 422)
    return _status(automation)


@bp.route("/<int:automation_id>/deactivate", methods=["POST"])
def deactivate(automation_id):
    """Stop taking contacts; runs in progress pause."""
    automation = _automation_or_404(automation_id)
    service.deactivate(automation)
    return _status(automation)


# --- trigger -------------------------------------------------------------------------------------

@bp.route("/<int:automation_id>/trigger")
def trigger_picker(automation_id):
    """The trigger picker modal, grouped in sections."""
    automation = _automation_or_404(automation_id)
    return modal("automations/_trigger_picker.html", automation=automation, triggers=TRIGGERS,
                 offered=service.offered_triggers(), no_events=service.NO_EVENTS,
                 recurring_missing=service.RECURRING_MISSING)


def _trigger_form(automation, trigger_type, status=200, errors=None, chosen=None):
    """One trigger's options, filled from the saved trigger or what was posted."""
    if chosen is None:
        same = automation.trigger_type == trigger_type
        config = (automation.trigger_config or {}) if same else {}
        chosen = {"event_types": config.get("event_types", []), "filter": config.get("filter", "any"),
                  "product_name": config.get("product_name", ""), "min_amount": config.get("min_amount", ""),
                  "status": config.get("status", "")}
    return modal("automations/_trigger_form.html", status, automation=automation, trigger_type=trigger_type,
                 trigger_name=TRIGGERS[trigger_type], chosen=chosen, errors=errors or {},
                 groups=service.offered_event_groups(chosen.get("event_types")),
                 purchase_filters=matching.PURCHASE_FILTERS, statuses=matching.RECURRING_STATUSES)


@bp.route("/<int:automation_id>/trigger/<trigger_type>")
def trigger_form(automation_id, trigger_type):
    """The options of the trigger the marketer picked."""
    automation = _automation_or_404(automation_id)
    if trigger_type not in TRIGGERS:
        abort(404)
    return _trigger_form(automation, trigger_type)


@bp.route("/<int:automation_id>/trigger", methods=["POST"])
def trigger_save(automation_id):
    """Save the trigger; answers the trigger summary and closes the picker."""
    automation = _automation_or_404(automation_id)
    trigger_type = request.form.get("trigger_type", "")
    event_types = request.form.getlist("event_types")
    try:
        service.set_trigger(automation, trigger_type, request.form, event_types)
    except ValidationError as exc:
        db.session.rollback()
        if trigger_type not in TRIGGERS:
            abort(400)
        chosen = {**request.form.to_dict(), "event_types": event_types}
        return _trigger_form(automation, trigger_type, 422, exc.errors, chosen)
    return _saved("automations/_trigger_summary.html", "#trigger-summary", **_editor_ctx(automation))


# --- actions -------------------------------------------------------------------------------------

@bp.route("/<int:automation_id>/actions/new")
def action_picker(automation_id):
    """Which kind of action to add."""
    automation = _automation_or_404(automation_id)
    return modal("automations/_action_picker.html", automation=automation, kinds=steps.STEP_KINDS,
                 help=steps.STEP_HELP)


def _step_form(automation, kind, step=None, values=None, errors=None, status=200):
    """An action's settings form (the email editor for "Send email")."""
    if values is None:
        values = dict(step.config or {}) if step else {}
    ctx = {"automation": automation, "kind": kind, "kind_label": steps.STEP_KINDS[kind], "step": step,
           "values": values, "errors": errors or {}}
    if kind in (steps.ADD_TAG, steps.REMOVE_TAG):
        ctx["tags"] = all_tags()
    if kind == steps.UPDATE_FIELD:
        ctx["fields"] = steps.updatable_fields()
    if kind == steps.WAIT:
        ctx["units"] = steps.WAIT_UNITS
    if kind in (steps.SEND_EMAIL, steps.UPDATE_FIELD):
        ctx["tag_sections"] = context.catalogue()
    if kind == steps.SEND_EMAIL:
        ctx.update(service.preview_choices(PREVIEW_CHOICES))
    return modal("automations/_step_form.html", status, **ctx)


@bp.route("/<int:automation_id>/actions/new/<kind>")
def action_new(automation_id, kind):
    """The settings form of a new action."""
    automation = _automation_or_404(automation_id)
    if kind not in steps.STEP_KINDS:
        abort(404)
    return _step_form(automation, kind, values={"unit": "days", "amount": 1} if kind == steps.WAIT else {})


def _steps_fragment(automation):
    """The action list, swapped in place after a change."""
    return _saved("automations/_steps.html", "#steps", **_editor_ctx(automation))


@bp.route("/<int:automation_id>/actions", methods=["POST"])
def action_create(automation_id):
    """Append an action."""
    automation = _automation_or_404(automation_id)
    kind = request.form.get("kind", "")
    if kind not in steps.STEP_KINDS:
        abort(400)
    try:
        service.add_step(automation, kind, request.form)
    except ValidationError as exc:
        db.session.rollback()
        return _step_form(automation, kind, values=request.form.to_dict(), errors=exc.errors, status=422)
    return _steps_fragment(automation)


@bp.route("/<int:automation_id>/actions/<int:step_id>/edit")
def action_edit(automation_id, step_id):
    """An existing action's settings."""
    automation = _automation_or_404(automation_id)
    step = _step_or_404(automation, step_id)
    return _step_form(automation, step.kind, step)


@bp.route("/<int:automation_id>/actions/<int:step_id>", methods=["POST"])
def action_update(automation_id, step_id):
    """Save an action's settings."""
    automation = _automation_or_404(automation_id)
    step = _step_or_404(automation, step_id)
    try:
        service.update_step(step, request.form)
    except ValidationError as exc:
        db.session.rollback()
        return _step_form(automation, step.kind, step, request.form.to_dict(), exc.errors, 422)
    return _steps_fragment(automation)


@bp.route("/<int:automation_id>/actions/<int:step_id>/delete", methods=["POST"])
def action_delete(automation_id, step_id):
    """Remove an action."""
    automation = _automation_or_404(automation_id)
    service.delete_step(_step_or_404(automation, step_id))
    return render_template("automations/_steps.html", **_editor_ctx(automation))


@bp.route("/<int:automation_id>/actions/<int:step_id>/move/<direction>", methods=["POST"])
def action_move(automation_id, step_id, direction):
    """Move an action up or down."""
    automation = _automation_or_404(automation_id)
    if direction not in ("up", "down"):
        abort(404)
    service.move_step(_step_or_404(automation, step_id), direction)
    return render_template("automations/_steps.html", **_editor_ctx(automation))


@bp.route("/preview", methods=["POST"])
def preview():
    """The email as a chosen contact would get it for a chosen event, unknown tags marked."""
    event_id, contact_id = steps.row_id(request.form.get("preview_event")), steps.row_id(request.form.get("preview_contact"))
    event = db.session.get(StripeEvent, event_id) if event_id is not None else None
    contact = db.session.get(Contact, contact_id) if contact_id is not None else None
    if contact is None and event is not None and event.contact_id:
        contact = db.session.get(Contact, event.contact_id)
    if contact is None:
        return render_template("automations/_email_preview.html", problem="Choose a contact (or an event that has one)."
                               ), 422
    rendered = render_email(request.form.get("subject", ""), request.form.get("body", ""),
                            context.values_for(contact, event), mark_unknown=True)
    return render_template("automations/_email_preview.html", rendered=rendered, contact=contact, event=event)


# --- runs ----------------------------------------------------------------------------------------

@bp.route("/<int:automation_id>/runs")
def runs(automation_id):
    """The runs table, polled while the editor is open."""
    automation = _automation_or_404(automation_id)
    return render_template("automations/_runs.html", **_editor_ctx(automation))


@bp.route("/runs/<int:run_id>")
def run_detail(run_id):
    """One run's log."""
    run = db.get_or_404(AutomationRun, run_id)
    event = db.session.get(StripeEvent, run.event_row_id) if run.event_row_id else None
    messages = service.run_messages(run.id)
    return modal("automations/_run_log.html", run=run, event=event, messages=messages,
                 step_count=len(run.automation.steps))


# --- outbox --------------------------------------------------------------------------------------

def _outbox_ctx() -> dict:
    """The newest messages (a page at a time) and whether SMTP is set up."""
    before = request.args.get("before", "")
    before_id = steps.row_id(before)
    messages, older = outbox.page(before_id, OUTBOX_PAGE)
    return {"messages": messages, "older": older, "before": before_id, "smtp_configured": outbox.smtp_configured(),
            "states": MSG_STATES}


@bp.route("/outbox")
def outbox_page():
    """Every message automations rendered: to, subject, state, for which automation."""
    ctx = _outbox_ctx()
    if request.headers.get("HX-Target") == "outbox-rows":
        return render_template("automations/_outbox_rows.html", **ctx)
    return render_template("automations/outbox.html", **ctx)


@bp.route("/outbox/<int:message_id>")
def outbox_message(message_id):
    """One message: the email as rendered, its text part, and how delivery went."""
    message = db.get_or_404(OutboxMessage, message_id)
    return modal("automations/_outbox_message.html", message=message, smtp_configured=outbox.smtp_configured())


@bp.route("/outbox/<int:message_id>/send", methods=["POST"])
def outbox_send(message_id):
    """Send a failed or unsent message again."""
    message = db.get_or_404(OutboxMessage, message_id)
    if not outbox.send_again(message):
        return modal("automations/_outbox_message.html", 422, message=message,
                     smtp_configured=outbox.smtp_configured(),
                     send_error="Only failed or unsent messages can be sent again, and only with SMTP_URL configured.")
    from webapp.automations.dispatch import enqueue_send
    try:
        enqueue_send(message.id)
    except REDIS_DOWN as exc:
        log.warning("Outbox message %s not queued (Redis: %s); the sweep will queue it", message.id, type(exc).__name__)
    return modal("automations/_outbox_message.html", message=message, smtp_configured=outbox.smtp_configured())


# --- command line --------------------------------------------------------------------------------

@bp.cli.command("sweep")
@click.option("--older-than", type=float, default=None,
              help="Only work idle for at least this many seconds (default AUTOMATION_SWEEP_GRACE).")
def sweep_command(older_than):
    """Queue again automation work whose job was lost."""
    from webapp.automations.sweep import sweep_automations

    click.echo(f"Automation sweep: {sweep_automations(older_than)}.")
