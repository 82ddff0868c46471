"""Pure rules for events that arrive out of order, twice, or in the same second.

Stripe does not keep order, so every write is stamped with the event that made it: Stripe's
`created` (seconds) and our row id (arrival order). An event may overwrite data only when its
stamp is newer; equal `created` goes to the later arrival. The same event applied again (an
imported record re-synced with today's data and the current mapping) may rewrite what it wrote.

Subscriptions add one rule: Stripe often sends `customer.subscription.updated` in the same second
as `.deleted` or `.paused`, so a cancelled or paused state is not overwritten on a tie by a
generic event that reports another status. A strictly newer event still wins: a resume is newer
than its pause.
"""
from __future__ import annotations

Stamp = tuple[int, int]  # (Stripe `created`, event row id)

STICKY_ON_TIE = {
    # current status: event types that may still replace it on a tie (the ones that set it or undo it)
    "CANCELLED": {"customer.subscription.deleted"},
    "PAUSED": {"customer.subscription.paused", "customer.subscription.resumed",
               "customer.subscription.deleted"},
}


def is_newer(incoming: Stamp, current: Stamp | None) -> bool:
    """True when data stamped `current` may be overwritten by the `incoming` event."""
    return current is None or tuple(incoming) >= tuple(current)


def subscription_update_wins(current_status: str | None, current: Stamp | None,
                             incoming_status: str, incoming_type: str, incoming: Stamp) -> bool:
    """Whether a subscription event may replace the recurring payment's stored state."""
    if current is None:
        return True
    if incoming[0] != current[0]:
        return incoming[0] > current[0]
    if incoming[1] < current[1]:
        return False
    allowed = STICKY_ON_TIE.get(current_status or "")
    if allowed is not None and incoming_status != current_status and incoming_type not in allowed:
        return False
    return True
