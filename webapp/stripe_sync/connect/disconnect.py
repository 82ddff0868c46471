"""Removing a resource (its endpoint in Stripe first) or a whole account, keeping synced data."""
import logging
from typing import Callable

from sqlalchemy import update

from webapp.extensions import db
from webapp.stripe_sync.apply import customer_store
from webapp.stripe_sync.connect import endpoints
from webapp.stripe_sync.client import StripeProblem, client_for_account
from webapp.stripe_sync.models import (
    ACCOUNT_CONNECTED, ACCOUNT_DISCONNECTED, RESOURCE_DISCONNECTED, RESOURCE_DISCONNECTING, StripeAccount,
    StripeResource, WebhookSecret,
)
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

_listeners: list[Callable[[str], None]] = []


def on_resource_disconnected(listener: Callable[[str], None]) -> None:
    """Whoever caches resources by token (webhook intake) drops one at once, unknown to this domain."""
    if listener not in _listeners:
        _listeners.append(listener)


def _announce_disconnected(token: str) -> None:
    """Tell every listener; one failing never undoes the committed disconnect."""
    for listener in list(_listeners):
        try:
            listener(token)
        except Exception:  # noqa: BLE001 - the disconnect is stored; caches expire on their own anyway
            log.exception("disconnect listener %r failed", listener)


class AlreadyRemoved(Exception):
    """Another tab (or person) removed it first."""


def disconnect_resource(resource: StripeResource) -> None:
    """Delete the endpoint in Stripe, then mark the resource disconnected.

    While Stripe has not confirmed, the resource stays "disconnecting" (it still receives events),
    so it never looks disconnected while Stripe keeps sending to it."""
    claimed = db.session.execute(
        update(StripeResource)
        .where(StripeResource.id == resource.id, StripeResource.status != RESOURCE_DISCONNECTED)
        .values(status=RESOURCE_DISCONNECTING,
                status_reason="Removing: the webhook endpoint may still exist in Stripe.")
    ).rowcount
    db.session.commit()
    if not claimed:
        raise AlreadyRemoved(f"The {resource.name} resource was already removed.")
    db.session.refresh(resource)
    if resource.webhook_endpoint_id:
        try:
            endpoints.delete_endpoint(client_for_account(resource.account), resource.webhook_endpoint_id)
        except StripeProblem as exc:
            resource.status_reason = ("Stripe could not confirm the removal, so its webhook endpoint may still "
                                      f"exist and send events. {exc.message} Retry the removal.")
            db.session.commit()
            raise
        except Exception as exc:
            from webapp.stripe_sync.client import describe
            problem = describe(exc)
            resource.status_reason = ("Stripe could not confirm the removal, so its webhook endpoint may still "
                                      f"exist and send events. {problem.message} Retry the removal.")
            db.session.commit()
            raise problem from None
    resource.status = RESOURCE_DISCONNECTED
    resource.status_reason = None
    resource.disconnected_at = utcnow()
    db.session.execute(update(WebhookSecret).where(WebhookSecret.resource_id == resource.id).values(active=False))
    db.session.commit()
    _announce_disconnected(resource.token)  # this process answers 410 at once; others within their cache time
    log.info("disconnected resource %s (%s)", resource.id, resource.kind)


def disconnect_account(account: StripeAccount) -> None:
    """Disconnect every resource, then erase the stored key and the remembered Stripe customers;
    synced data (contacts, orders, the log) stays."""
    if account.status != ACCOUNT_CONNECTED:
        raise AlreadyRemoved("This Stripe account was already disconnected.")
    for res in list(account.active_resources):
        try:
            disconnect_resource(res)
        except AlreadyRemoved:
            continue
    account.secret_key_enc = None
    customer_store.forget_account(account.id)
    account.status = ACCOUNT_DISCONNECTED
    account.disconnected_at = utcnow()
    db.session.commit()
    log.info("disconnected Stripe account %s", account.stripe_account_id)
