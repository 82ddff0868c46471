"""Per-account object collections kept sorted so a list page costs O(log n + page), not O(n)."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Iterator


class Collection:
    """Objects of one kind for one account and mode, ordered by (created, id); lists read it newest first."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.created: dict[str, int] = {}
        self.deleted: set[str] = set()
        self._keys: list[tuple[int, str]] = []
        self._dirty = False

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, object_id: str) -> bool:
        return object_id in self.items

    def _sorted(self) -> list[tuple[int, str]]:
        """Sort lazily after bulk inserts so generating 100k objects stays one O(n log n) sort."""
        if self._dirty:
            self._keys.sort()
            self._dirty = False
        return self._keys

    def put(self, object_id: str, created: int, obj: Any) -> None:
        """Insert or replace one object, keeping the order index exact."""
        keys = self._sorted()
        if object_id in self.items:
            old = (self.created[object_id], object_id)
            pos = bisect_left(keys, old)
            if pos < len(keys) and keys[pos] == old:
                del keys[pos]
        self.items[object_id] = obj
        self.created[object_id] = created
        self.deleted.discard(object_id)
        key = (created, object_id)
        keys.insert(bisect_left(keys, key), key)

    def bulk_put(self, records: list[tuple[str, int, Any]]) -> None:
        """Append many new objects and defer sorting to the next read."""
        for object_id, created, obj in records:
            if object_id in self.items:
                self.put(object_id, created, obj)
                continue
            self.items[object_id] = obj
            self.created[object_id] = created
            self._keys.append((created, object_id))
            self._dirty = True  # before any later put() in this batch, which must see the keys sorted

    def delete(self, object_id: str) -> bool:
        """Remove an object but remember it, because Stripe answers retrieves of deleted objects differently."""
        if object_id not in self.items:
            return False
        keys = self._sorted()
        key = (self.created[object_id], object_id)
        pos = bisect_left(keys, key)
        if pos < len(keys) and keys[pos] == key:
            del keys[pos]
        del self.items[object_id]
        del self.created[object_id]
        self.deleted.add(object_id)
        return True

    def newest_first(self) -> Iterator[Any]:
        """Iterate every object newest first (for small collections and snapshots)."""
        for _, object_id in reversed(self._sorted()):
            yield self.items[object_id]

    def page(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        created_range: tuple[int | None, int | None] = (None, None),
        match: Callable[[Any], bool] | None = None,
    ) -> tuple[list[Any], bool]:
        """Return (objects newest first, has_more) the way Stripe cursors work; cursors must exist here."""
        keys = self._sorted()
        lo_created, hi_created = created_range
        lo = 0 if lo_created is None else bisect_left(keys, (lo_created, ""))
        hi = len(keys) if hi_created is None else bisect_left(keys, (hi_created + 1, ""))
        found: list[Any] = []
        if ending_before is not None:
            anchor = (self.created[ending_before], ending_before)
            start = max(bisect_left(keys, anchor) + 1, lo)
            i = start
            while i < hi and len(found) <= limit:
                obj = self.items[keys[i][1]]
                if match is None or match(obj):
                    found.append(obj)
                i += 1
            has_more = len(found) > limit
            found = found[:limit]
            found.reverse()
            return found, has_more
        if starting_after is not None:
            anchor = (self.created[starting_after], starting_after)
            start = min(bisect_left(keys, anchor) - 1, hi - 1)
        else:
            start = hi - 1
        i = start
        while i >= lo and len(found) <= limit:
            obj = self.items[keys[i][1]]
            if match is None or match(obj):
                found.append(obj)
            i -= 1
        has_more = len(found) > limit
        return found[:limit], has_more
