"""Extension points the CRM owns, so the parts that feed it plug in without the CRM importing them."""
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from markupsafe import Markup

from webapp.crm.models import Contact, ContactField

F = TypeVar("F", bound=Callable)


class Hook(Generic[F]):
    """Callables in registration order, each at most once: every create_app registers again."""

    def __init__(self) -> None:
        self._callables: list[F] = []

    def register(self, fn: F) -> F:
        """Returns fn, so a module can use it as a decorator."""
        if fn not in self._callables:
            self._callables.append(fn)
        return fn

    def unregister(self, fn: F) -> None:
        """Tests add hooks of their own and must leave the registry as they found it."""
        if fn in self._callables:
            self._callables.remove(fn)

    def __iter__(self) -> Iterator[F]:
        return iter(list(self._callables))


# Each returns why the field must stay (shown to the user as is), or None to let it go.
field_deletion_vetoes: Hook[Callable[[ContactField], str | None]] = Hook()
# Each drops its own rows that point at the field, once no veto objected, before the field goes.
field_deletion_cleanups: Hook[Callable[[ContactField], None]] = Hook()
# Each names the accounts buyer records came from: {account id: name} for the ids it knows.
account_namers: Hook[Callable[[set[int]], dict[int, str]]] = Hook()
# Each adds one card below the contact's commerce, HTML from an autoescaping template render.
contact_sections: Hook[Callable[[Contact], Markup]] = Hook()


def deletion_refusal(field: ContactField) -> str | None:
    """The first objection is enough to keep the field; the user fixes one thing at a time."""
    for veto in field_deletion_vetoes:
        message = veto(field)
        if message:
            return message
    return None


def release_field(field: ContactField) -> None:
    """Foreign keys into contact_fields would otherwise refuse the delete."""
    for cleanup in field_deletion_cleanups:
        cleanup(field)


def account_names(account_ids: set[int]) -> dict[int, str]:
    """A buyer with records in several accounts needs to see which record is which."""
    names: dict[int, str] = {}
    if account_ids:
        for namer in account_namers:
            names.update(namer(set(account_ids)))
    return names


def extra_contact_sections(contact: Contact) -> list[Markup]:
    """What other parts know about the contact, in registration order."""
    return [section(contact) for section in contact_sections]
