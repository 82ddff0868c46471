"""The connect flow's domain: check a key with Stripe, keep a draft between steps, and finish a
connection (endpoint in Stripe + account, resource, secret and mapping rows) all or nothing."""
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

import stripe
from sqlalchemy import select

from webapp.crm.models import ContactField
from webapp.crypto import decrypt, encrypt
from webapp.extensions import db
from webapp.stripe_sync.connect import endpoints
from webapp.stripe_sync.history import importer
from webapp.stripe_sync.client import StripeProblem, client_for_account, describe, make_client
from webapp.stripe_sync.events import RESOURCE_KINDS
from webapp.stripe_sync.connect.fields import collect_metadata_keys
from webapp.stripe_sync.connect.keys import classify_key, mask_key
from webapp.stripe_sync.connect.mapping import MappingResult, effective_rows, validate
from webapp.stripe_sync.models import (
    ACCOUNT_CONNECTED, RESOURCE_ACTIVE, RESOURCE_DISCONNECTED, RESOURCE_NEEDS_ATTENTION, SYNC_TYPES, ConnectDraft, FieldMapping,
    StripeAccount, StripeResource, WebhookSecret,
)
from webapp.timeutil import epoch, utcnow

log = logging.getLogger(__name__)
DRAFT_LIFETIME = timedelta(hours=6)


class KeyRejected(Exception):
    """The key failed a format check or Stripe refused it; message is safe to show."""


class AlreadyConnected(Exception):
    """This Stripe account is connected already; the page offers its manage page instead."""

    def __init__(self, account: StripeAccount):
        super().__init__(f"This Stripe account ({account.email or account.stripe_account_id}) is already connected.")
        self.account = account


@dataclass(frozen=True)
class AccountInfo:
    """What Stripe told us about the key's account."""

    id: str
    email: str | None
    display_name: str | None
    livemode: bool


def verify_key(raw_key: str | None) -> tuple[str, AccountInfo, list[str]]:
    """Check the format, then ask Stripe: the account, read access to customers and endpoints.

    Returns the cleaned key, the account, and metadata keys of the most recent customers."""
    check = classify_key(raw_key)
    if not check.ok:
        raise KeyRejected(check.error)
    key = check.key
    client = make_client(key)
    try:
        acct = client.v1.accounts.retrieve_current()
        recent = client.v1.customers.list(params={"limit": 100})
        client.v1.webhook_endpoints.list(params={"limit": 1})
    except stripe.StripeError as exc:
        problem = describe(exc)
        log.info("Stripe key check failed: %s", problem.kind)
        raise KeyRejected(problem.message) from None
    acct = acct.to_dict()
    profile = acct.get("business_profile") or {}
    settings = (acct.get("settings") or {}).get("dashboard") or {}
    info = AccountInfo(id=acct["id"], email=acct.get("email"),
                       display_name=settings.get("display_name") or profile.get("name"),
                       livemode=check.mode == "live")
    return key, info, collect_metadata_keys(c.to_dict() for c in recent.data)


def start_draft(user_id: int, raw_key: str | None) -> ConnectDraft:
    """Step 1: a verified key becomes a draft; nothing counts as connected yet."""
    _expire_old_drafts()
    key, info, metadata_keys = verify_key(raw_key)
    existing = db.session.scalar(select(StripeAccount).where(StripeAccount.stripe_account_id == info.id))
    if existing is not None and existing.status == ACCOUNT_CONNECTED:
        raise AlreadyConnected(existing)
    draft = ConnectDraft(id=secrets.token_urlsafe(24), user_id=user_id, secret_key_enc=encrypt(key),
                         key_mask=mask_key(key), stripe_account_id=info.id, email=info.email,
                         display_name=info.display_name, livemode=info.livemode, metadata_keys=metadata_keys)
    db.session.add(draft)
    db.session.commit()
    return draft


def draft_for_account(user_id: int, account: StripeAccount) -> ConnectDraft:
    """A draft that adds a resource to an already connected account, using its stored key."""
    _expire_old_drafts()
    client = make_client(decrypt(account.secret_key_enc))
    try:
        metadata_keys = collect_metadata_keys(
            c.to_dict() for c in client.v1.customers.list(params={"limit": 100}).data)
    except stripe.StripeError as exc:
        raise describe(exc) from None
    draft = ConnectDraft(id=secrets.token_urlsafe(24), user_id=user_id, account_id=account.id,
                         key_mask=account.key_mask, stripe_account_id=account.stripe_account_id,
                         email=account.email, display_name=account.display_name, livemode=account.livemode,
                         metadata_keys=metadata_keys)
    db.session.add(draft)
    db.session.commit()
    return draft


def load_draft(draft_id: str | None, user_id: int) -> ConnectDraft | None:
    """A live draft of this user, or None (expired, finished, or someone else's)."""
    if not draft_id:
        return None
    draft = db.session.get(ConnectDraft, draft_id)
    if draft is None or draft.user_id != user_id or draft.created_at < utcnow() - DRAFT_LIFETIME:
        return None
    return draft


def connected_accounts() -> list[StripeAccount]:
    """Accounts shown under Connected Apps, oldest first."""
    return list(db.session.scalars(select(StripeAccount).where(StripeAccount.status == ACCOUNT_CONNECTED)
                                   .order_by(StripeAccount.connected_at)))


def connected_account(account_id: int) -> StripeAccount | None:
    """An account that is still connected, or None, so a stale page cannot add to a disconnected one."""
    account = db.session.get(StripeAccount, account_id)
    return account if account is not None and account.status == ACCOUNT_CONNECTED else None


def connected_resource(resource_id: int) -> StripeResource | None:
    """A resource that is still connected, or None: a removed one's mapping is no longer editable."""
    res = db.session.get(StripeResource, resource_id)
    return res if res is not None and res.status != RESOURCE_DISCONNECTED else None


def connected_kinds(stripe_account_id: str) -> set[str]:
    """Resource kinds this Stripe account already syncs, so they are not offered twice."""
    rows = db.session.scalars(
        select(StripeResource.kind).join(StripeAccount)
        .where(StripeAccount.stripe_account_id == stripe_account_id,
               StripeResource.status != RESOURCE_DISCONNECTED))
    return set(rows)


def choose_resource(draft: ConnectDraft, kind: str | None, sync_type: str | None,
                    trigger_historical: bool) -> dict[str, str]:
    """Step 2: remember the resource and sync type; returns field errors (empty when fine)."""
    errors = {}
    if kind not in RESOURCE_KINDS:
        errors["kind"] = "Choose a resource."
    elif kind in connected_kinds(draft.stripe_account_id):
        errors["kind"] = "This resource is already connected for this account; choose another."
    if sync_type not in SYNC_TYPES:
        errors["sync_type"] = "Choose a sync type."
    if not errors:
        draft.kind, draft.sync_type = kind, sync_type
        draft.trigger_historical = bool(trigger_historical)
        db.session.commit()
    return errors


def draft_client(draft: ConnectDraft) -> stripe.StripeClient:
    """An SDK client with the draft's key (new account) or the account's stored key."""
    if draft.account_id:
        return client_for_account(db.session.get(StripeAccount, draft.account_id))
    return make_client(decrypt(draft.secret_key_enc))


def describe_limit(found: list[dict], base_url: str) -> list[endpoints.EndpointInfo]:
    """The endpoint-limit panel: every endpoint, ours marked, the ones our resources still use named."""
    in_use = {r.webhook_endpoint_id: f"{r.name} ({r.account.email or r.account.stripe_account_id})"
              for r in db.session.scalars(select(StripeResource).where(StripeResource.webhook_endpoint_id.isnot(None),
                                                                        StripeResource.status != "disconnected"))}
    return endpoints.describe_endpoints(found, base_url, in_use)


def remove_leftover_endpoint(draft: ConnectDraft, endpoint_id: str, base_url: str) -> tuple[str | None, list[dict]]:
    """Delete one of our unused endpoints so Finish has room; returns the error to show (or None) and
    the endpoints left, none when Stripe could not be asked."""
    client = draft_client(draft)
    try:
        found = endpoints.list_endpoints(client)
        info = {i.id: i for i in describe_limit(found, base_url)}.get(endpoint_id)
        if info is None:
            return "That endpoint is already gone.", found
        if not info.removable:
            return "Only endpoints left over from this app can be removed here.", found
        endpoints.delete_endpoint(client, endpoint_id)
        return None, [e for e in found if e["id"] != endpoint_id]
    except StripeProblem as exc:
        return exc.message, []
    except Exception as exc:  # noqa: BLE001 - a Stripe SDK error
        return describe(exc).message, []


def metadata_keys_for(resource: StripeResource) -> list[str]:
    """Metadata keys of recent customers, plus those already mapped; Stripe being down is not fatal."""
    mapped = [m.stripe_field.split(".", 1)[1] for m in resource.mappings if m.stripe_field.startswith("metadata.")]
    try:
        recent = client_for_account(resource.account).v1.customers.list(params={"limit": 100})
        found = collect_metadata_keys(c.to_dict() for c in recent.data)
    except Exception as exc:  # noqa: BLE001 - the editor still works with the keys already mapped
        log.info("could not list customers for metadata keys: %s", describe(exc).kind)
        found = []
    return sorted(set(found) | set(mapped))


def crm_fields() -> dict[int, ContactField]:
    """Existing CRM fields by id: the only mapping targets."""
    return {f.id: f for f in db.session.scalars(select(ContactField))}


def email_field_id() -> int:
    """The standard Email field's id."""
    return db.session.scalar(select(ContactField.id).where(ContactField.key == "email"))


def finish(draft: ConnectDraft, rows, base_url: str) -> tuple[MappingResult, StripeResource | None]:
    """Step 3: validate the mapping, create the endpoint in Stripe, then store everything at once.

    If storing fails after Stripe created the endpoint, the endpoint is deleted again."""
    result = validate(rows, crm_fields(), draft.metadata_keys or ())
    if not result.ok:
        return result, None
    if draft.kind in connected_kinds(draft.stripe_account_id):
        result.general.append("This resource was connected in the meantime (another tab?).")
        return result, None
    account = db.session.get(StripeAccount, draft.account_id) if draft.account_id else None
    key = decrypt(account.secret_key_enc if account else draft.secret_key_enc)
    client = make_client(key)
    token = secrets.token_urlsafe(32)
    url = endpoints.webhook_url(base_url, token)
    status, reason = RESOURCE_ACTIVE, None
    try:
        endpoint_id, signing_secret = endpoints.create_endpoint(client, draft.kind, url, draft.livemode)
    except endpoints.UnreachableUrl:
        # Stripe will not register a private address; keep the connection and say what to do.
        endpoint_id, signing_secret = None, None
        status = RESOURCE_NEEDS_ATTENTION
        reason = (f"Stripe cannot deliver to {url}. Set PUBLIC_BASE_URL to this app's public HTTPS address "
                  "and connect the resource again, or forward events with the Stripe CLI.")
    except stripe.StripeError as exc:
        raise describe(exc) from None
    try:
        if account is None:
            account = db.session.scalar(
                select(StripeAccount).where(StripeAccount.stripe_account_id == draft.stripe_account_id))
            if account is None:
                account = StripeAccount(stripe_account_id=draft.stripe_account_id)
                db.session.add(account)
            account.email, account.display_name = draft.email, draft.display_name
            account.livemode, account.key_mask = draft.livemode, draft.key_mask
            account.secret_key_enc = draft.secret_key_enc
            account.status, account.connected_at, account.disconnected_at = ACCOUNT_CONNECTED, utcnow(), None
            # Missed events are recovered from this connection on (stripe_sync/recovery/), not before it.
            account.events_checkpoint, account.events_gap_from, account.events_gap_to = epoch(utcnow()), None, None
        res = StripeResource(account=account, kind=draft.kind, sync_type=draft.sync_type,
                             trigger_historical=draft.trigger_historical, status=status, status_reason=reason,
                             token=token, webhook_endpoint_id=endpoint_id, webhook_url=url)
        if signing_secret:
            res.secrets.append(WebhookSecret(secret_enc=encrypt(signing_secret)))
        for position, row in enumerate(effective_rows(result)):
            res.mappings.append(FieldMapping(position=position, stripe_field=row.stripe_field, field_id=row.field_id))
        db.session.add(res)
        db.session.delete(draft)
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("storing the connection failed; removing endpoint %s from Stripe", endpoint_id)
        try:
            if endpoint_id:
                endpoints.delete_endpoint(client, endpoint_id)
        except (stripe.StripeError, StripeProblem):
            log.error("could not remove endpoint %s after a failed connection", endpoint_id)
        raise
    log.info("connected %s for Stripe account %s (resource %s)", res.kind, account.stripe_account_id, res.id)
    importer.start_if_historical(res)  # existing records import in the background; never fails the connection
    return result, res


def save_mapping(resource: StripeResource, rows) -> MappingResult:
    """Replace a resource's mapping; only events processed from now on use it."""
    result = validate(rows, crm_fields(), ())
    if not result.ok:
        return result
    resource.mappings.clear()
    db.session.flush()
    for position, row in enumerate(effective_rows(result)):
        resource.mappings.append(FieldMapping(position=position, stripe_field=row.stripe_field, field_id=row.field_id))
    db.session.commit()
    return result


def _expire_old_drafts() -> None:
    """Forget drafts nobody finished."""
    db.session.execute(db.delete(ConnectDraft).where(ConnectDraft.created_at < utcnow() - DRAFT_LIFETIME))

