"""How the contact list finds and orders contacts, fast at 100,000 of them on SQLite and PostgreSQL.

Matching (`Listing`, for service.search_contacts):
- A term of 3 characters or more matches any part of the email or of "first last" (so "unez",
  "example" and "ada lov" all find what a person expects), through a trigram index: on SQLite the
  FTS5 table `contacts_fts` (tokenize='trigram', external content on contacts, kept in step by
  triggers: migration 0012), on PostgreSQL `LIKE '%term%'` on the pg_trgm GIN indexes of
  contacts.email_lower and name_key. Both are case-insensitive substring matches; the term is taken
  literally (FTS5 phrase quoting, LIKE's `%`, `_` and `\\` escaped).
- Trigrams cannot find a shorter term, so 1 or 2 characters match the start of the email, of
  "first last" or of the last name, through the plain indexes on those columns.
- A term that starts with `cus_` also matches the Stripe customer ids linked to contacts
  (contact_stripe_customers) by prefix, exactly as typed (Stripe ids are case-sensitive).

Counting: a search counts its matches only as far as it needs. `Listing(count_cap=N)` stops at N + 1,
so "example", which may match every contact, costs a tenth of a pass over the table; the list then
says "10,000+" (crm/service.search_contacts picks N from the page asked for). Lists without a term
are always counted exactly (an index count).

Ordering: SORTS, by a whitelisted `sort` parameter (`-` for descending); anything else is the
default, newest first. Each sortable column has an index ending in id, the tie-break. Contacts
without a value (no payment, no subscription) come after those with one in both directions, so a
sorted list starts with the contacts the sort is about; each such page is read from two index
ranges (values, then the rest newest first) instead of sorting the table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import and_, case, column, exists, func, literal_column, or_, select, table, text, union, union_all

from webapp.crm.models import Contact, ContactStripeCustomer, ContactTag
from webapp.extensions import db

MIN_TRIGRAM = 3
# Up to this many matches, a search collects them and sorts them; above, it walks the sort's index
# testing each row (the page fills quickly).
WALK_ABOVE = 2000
CUSTOMER_PREFIX = "cus_"
_fts = table("contacts_fts", column("rowid"))
_accounts = table("stripe_accounts", column("id"))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Sort:
    """One way to order the list: a column, a direction, whether contacts may lack a value."""

    key: str
    descending: bool

    @property
    def param(self) -> str:
        """The `sort` query parameter that asks for this order."""
        return ("-" if self.descending else "") + self.key

    @property
    def column(self):
        """The contacts column the order follows (id when sorting by date added)."""
        return SORT_COLUMNS[self.key][0]

    @property
    def nullable(self) -> bool:
        """Whether some contacts have no value (those come last)."""
        return SORT_COLUMNS[self.key][1]

    def order_by(self, col=None) -> list:
        """ORDER BY clauses: the column, then id, both in this direction."""
        cols = [self.column if col is None else col] + ([] if self.key in ("added", "email") else [Contact.id])
        return [c.desc() if self.descending else c.asc() for c in cols]

    def header(self, key: str) -> dict:
        """What a column header needs: the sort its link asks for and its aria-sort value."""
        if key == self.key:
            return {"param": (key if self.descending else "-" + key), "aria": "descending" if self.descending
                    else "ascending"}
        return {"param": ("-" if FIRST_DESCENDING.get(key) else "") + key, "aria": None}


# key → (column, may be NULL). The email index is unique, so email needs no id tie-break of its own.
SORT_COLUMNS = {
    "added": (Contact.id, False),
    "email": (Contact.email_lower, False),
    "lifetime_value": (Contact.lifetime_value, False),
    "subscription": (Contact.subscription_status, True),
    "last_payment": (Contact.last_payment_at, True),
}
# The first click on a header: biggest value and latest payment first; the others A→Z / oldest.
FIRST_DESCENDING = {"lifetime_value": True, "last_payment": True}
DEFAULT_SORT = Sort("added", True)


def parse_sort(raw: str | None) -> Sort:
    """A whitelisted sort, or the default (newest first) for anything else."""
    raw = (raw or "").strip()
    key = raw[1:] if raw.startswith("-") else raw
    if key not in SORT_COLUMNS:
        return DEFAULT_SORT
    return Sort(key, raw.startswith("-"))


def normalise(q: str | None) -> str:
    """What is matched: lower case, control characters and runs of spaces made one space."""
    return " ".join(_CONTROL.sub(" ", q or "").split()).lower()


def like_pattern(term: str) -> str:
    """`%term%` with LIKE's wildcards and the escape character taken literally (ESCAPE '\\')."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def fts_phrase(term: str) -> str:
    """The term as one FTS5 phrase: with the trigram tokenizer, a substring match."""
    return '"' + term.replace('"', '""') + '"'


def _prefix_range(col, prefix: str):
    """An index-friendly 'starts with'."""
    return and_(col >= prefix, col < prefix + "\uffff")


class Listing:
    """One request's filter and order: counts the matches and reads one page of ids."""

    def __init__(self, q: str | None, tag_id: int | None, sort: Sort, count_cap: int | None = None):
        """Normalise the term once; the dialect decides FTS5 or pg_trgm."""
        self.term = normalise(q)
        raw = " ".join(_CONTROL.sub(" ", q or "").split())
        self.customer_prefix = raw if raw.lower().startswith(CUSTOMER_PREFIX) and " " not in raw else None
        self.tag_id = tag_id
        self.sort = sort
        self.sqlite = db.session.get_bind().dialect.name == "sqlite"
        self.substring = len(self.term) >= MIN_TRIGRAM
        self._total: int | None = None
        # A search stops counting past this (never below WALK_ABOVE, which page_ids compares with).
        self.count_cap = max(count_cap, WALK_ABOVE) if count_cap is not None and self.term else None
        if self.substring and not self.sqlite:
            # psycopg prepares a statement run 5 times on a connection; a plan made for any pattern
            # cannot use the trigram indexes, so each search is planned for its own pattern.
            db.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))

    # --- which contacts -----------------------------------------------------------------------

    def _tagged(self):
        """Ids carrying the chosen tag."""
        return select(ContactTag.contact_id).where(ContactTag.tag_id == self.tag_id)

    def _tagged_row(self):
        """A primary-key probe per match: as a join, SQLite may run the MATCH once per link of a common tag."""
        return exists().where(ContactTag.contact_id == _fts.c.rowid, ContactTag.tag_id == self.tag_id)

    def _text_ids(self):
        """Ids whose email or name matches the term (a select of one column)."""
        if not self.substring:
            return union_all(*(select(Contact.id).where(_prefix_range(col, self.term))
                               for col in (Contact.email_lower, Contact.name_key, Contact.last_key)))
        if self.sqlite:
            return select(_fts.c.rowid).where(self._fts_match())
        return select(Contact.id).where(self._like())

    def _fts_match(self):
        """contacts_fts MATCH the phrase."""
        return literal_column("contacts_fts").op("MATCH")(fts_phrase(self.term))

    def _like(self):
        """The substring test on the row itself (the trigram indexes, also in "C", serve it on PostgreSQL)."""
        pattern = like_pattern(self.term)
        cols = (Contact.email_lower, Contact.name_key)
        if not self.sqlite:
            cols = tuple(col.collate("C") for col in cols)  # twice as fast as the database's collation
        return or_(*(col.like(pattern, escape="\\") for col in cols))

    def _customer_ids(self):
        """Contacts linked to a Stripe customer id starting with what was typed (primary-key ranges)."""
        return select(ContactStripeCustomer.contact_id).where(
            ContactStripeCustomer.account_id.in_(select(_accounts.c.id)),
            _prefix_range(ContactStripeCustomer.customer_id, self.customer_prefix))

    def conditions(self, walk: bool = False) -> list:
        """WHERE clauses on contacts for the term and tag; `walk` tests the substring on each row."""
        conds = []
        if self.term:
            if walk and self.substring and not self.customer_prefix:
                conds.append(self._like())
            elif self.customer_prefix:
                conds.append(Contact.id.in_(union(self._text_ids(), self._customer_ids())))
            elif self.substring and not self.sqlite:
                conds.append(self._like())
            else:
                conds.append(Contact.id.in_(self._text_ids()))
        if self.tag_id:
            conds.append(Contact.id.in_(self._tagged()))
        return conds

    @property
    def _fts_only(self) -> bool:
        """SQLite substring search without customer ids: the FTS table alone can count and page."""
        return self.sqlite and self.substring and not self.customer_prefix

    # --- how many ------------------------------------------------------------------------------

    def count(self) -> int:
        """Matching contacts; with a count_cap, at most count_cap + 1 (see `capped`)."""
        if self._total is None:
            self._total = db.session.scalar(self._count_query())
        return self._total

    @property
    def capped(self) -> bool:
        """Whether more than count_cap contacts match, so count() is not the whole number."""
        return self.count_cap is not None and self.count() > self.count_cap

    def _count_query(self):
        """The cheapest count for the case, stopping after count_cap + 1 matches when capped."""
        if not self.term and self.tag_id:
            return select(func.count()).select_from(ContactTag).where(ContactTag.tag_id == self.tag_id)
        if self._fts_only:
            matches = select(_fts.c.rowid).where(self._fts_match())
            matches = matches.where(self._tagged_row()) if self.tag_id else matches
        elif self.term and not self.substring and not self.tag_id:
            # The prefix ranges' ids, each once, without joining back to contacts.
            matches = union(*(select(Contact.id).where(_prefix_range(col, self.term))
                              for col in (Contact.email_lower, Contact.name_key, Contact.last_key)))
        else:
            matches = select(Contact.id).where(*self.conditions())
        if self.count_cap is not None:
            matches = matches.limit(self.count_cap + 1)
        return select(func.count()).select_from(matches.subquery())

    # --- one page ------------------------------------------------------------------------------

    def page_ids(self, limit: int, offset: int) -> list[int]:
        """Ids of one page, in the list's order."""
        if self.term and not self._fts_only and self.count() <= WALK_ABOVE:
            return self._sorted_matches(limit, offset)
        if self.sort.key == "added":
            return self._by_id(limit, offset)
        walk = self.sqlite and self.substring and self.count() > WALK_ABOVE
        conds = self.conditions(walk=walk)
        if not self.sort.nullable:
            return self._ids(select(Contact.id).where(*conds).order_by(*self.sort.order_by()), limit, offset)
        return self._nulls_last(conds, limit, offset)

    def _by_id(self, limit: int, offset: int) -> list[int]:
        """Newest (or oldest) first: from the tag index, the FTS table, or the primary key."""
        if not self.term and self.tag_id:
            # Walk the (tag_id, contact_id) index; a common tag would otherwise build a list of most
            # contacts' ids before the first page.
            query = select(ContactTag.contact_id).where(ContactTag.tag_id == self.tag_id).order_by(
                *self.sort.order_by(ContactTag.contact_id))
        elif self._fts_only:
            # The FTS table hands out its matches in rowid order: the page is read without collecting
            # every match first ("example" may match every contact).
            query = select(_fts.c.rowid).where(self._fts_match()).order_by(*self.sort.order_by(_fts.c.rowid))
            if self.tag_id:
                query = query.where(self._tagged_row())
        else:
            query = select(Contact.id).where(*self.conditions()).order_by(*self.sort.order_by())
        return self._ids(query, limit, offset)

    def _sorted_matches(self, limit: int, offset: int) -> list[int]:
        """A few matches, collected first and then sorted: walking an index in the list's order could
        pass most contacts before the page fills (customer12… are neighbours, not spread out)."""
        col, down = self.sort.column, self.sort.descending
        matches = select(Contact.id.label("id"), col.label("key")).where(*self.conditions()).cte(
            "matches").prefix_with("MATERIALIZED")  # never folded back into a walk of the whole table
        tie = matches.c.id.desc() if down else matches.c.id.asc()
        order = [matches.c.key.desc() if down else matches.c.key.asc(), tie]
        if self.sort.nullable:  # no value last, newest first
            order = [matches.c.key.is_(None)] + order[:1] + [
                case((matches.c.key.is_(None), -matches.c.id), else_=-matches.c.id if down else matches.c.id)]
        elif self.sort.key in ("added", "email"):
            order = order[:1]
        return self._ids(select(matches.c.id).order_by(*order), limit, offset)

    def _nulls_last(self, conds: list, limit: int, offset: int) -> list[int]:
        """Valued contacts in order, then the rest newest first: two (column, id) index ranges, no sort."""
        # The valued part is only counted when the page lies wholly beyond it.
        col = self.sort.column
        valued = select(Contact.id).where(*conds, col.is_not(None))
        ids = self._ids(valued.order_by(*self.sort.order_by()), limit, offset)
        if len(ids) == limit:
            return ids
        if ids or offset == 0:
            skip = 0
        else:
            with_value = db.session.scalar(select(func.count()).select_from(valued.subquery()))
            skip = offset - with_value
        rest = select(Contact.id).where(*conds, col.is_(None)).order_by(Contact.id.desc())
        return ids + self._ids(rest, limit - len(ids), skip)

    @staticmethod
    def _ids(query, limit: int, offset: int) -> list[int]:
        """Run a one-column id query for one page."""
        return list(db.session.scalars(query.limit(limit).offset(max(0, offset))))
