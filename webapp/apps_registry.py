"""The apps the Apps page lists; another integration joins by calling register()."""
from dataclasses import dataclass


@dataclass(frozen=True)
class AppInfo:
    """One integration as the Apps page shows it."""

    slug: str
    name: str
    summary: str
    endpoint: str  # the url_for endpoint of the app's page
    keywords: tuple[str, ...] = ()

    def matches(self, query: str) -> bool:
        """Case-insensitive match on name, summary and keywords."""
        q = query.strip().lower()
        return not q or any(q in text.lower() for text in (self.name, self.summary, *self.keywords))


_APPS: dict[str, AppInfo] = {}


def register(app: AppInfo) -> None:
    """Add an app to the catalogue (idempotent by slug)."""
    _APPS[app.slug] = app


def search(query: str = "") -> list[AppInfo]:
    """Apps matching the query, by name."""
    return sorted((a for a in _APPS.values() if a.matches(query)), key=lambda a: a.name.lower())


register(AppInfo(
    slug="stripe", name="Stripe", endpoint="apps.stripe_page",
    summary="Sync Stripe customers, payments, invoices, subscriptions and checkouts into contacts, "
            "tags, orders and recurring payments.",
    keywords=("payments", "billing", "subscriptions", "e-commerce"),
))
