"""Ids and page numbers from URLs and forms, parsed one way everywhere: a crafted number is "absent",
never a 500 from int() or from the database."""

# The largest value our id columns hold on both databases (PostgreSQL INTEGER is 32 bits; SQLite holds
# 64). Path ids are bounded by it at routing (webapp.IdConverter), query and form ids here.
MAX_ID = 2 ** 31 - 1
_MAX_DIGITS = len(str(MAX_ID))


def whole_number(raw: object, minimum: int = 1) -> int | None:
    """An id or page number from `minimum` to MAX_ID, or None: crafted input is absent, never a 500."""
    # str.isdigit() alone accepts "²" (int() refuses it), and int() reads Arabic-Indic and full-width
    # digits: only ASCII counts. The length is checked before int(), which refuses past 4,300 digits.
    text = str(raw).strip() if raw is not None else ""
    if not (text.isascii() and text.isdigit()):  # among ASCII characters only 0-9 are digits
        return None
    text = text.lstrip("0") or "0"
    if len(text) > _MAX_DIGITS:
        return None
    number = int(text)
    return number if minimum <= number <= MAX_ID else None
