"""Stripe amounts (integers in the currency's minor unit) as people read them."""
from decimal import Decimal

# Stripe's zero-decimal and three-decimal currencies (docs: "Zero-decimal currencies").
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
                "vuv", "xaf", "xof", "xpf"}
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "krw": "₩", "cad": "CA$",
           "aud": "A$", "nzd": "NZ$", "chf": "CHF ", "brl": "R$", "mxn": "MX$"}


def minor_digits(currency: str | None) -> int:
    """How many digits after the point a currency's minor unit has."""
    code = (currency or "").lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def format_amount(amount: int | None, currency: str | None) -> str:
    """450000 usd → "$4,500.00"; unknown currencies keep their code, e.g. "12.50 SEK"."""
    if amount is None:
        return "—"
    digits = minor_digits(currency)
    value = Decimal(int(amount)).scaleb(-digits)
    sign = "-" if value < 0 else ""
    text = f"{abs(value):,.{digits}f}"
    code = (currency or "").lower()
    symbol = SYMBOLS.get(code)
    if symbol:
        return f"{sign}{symbol}{text}"
    return f"{sign}{text} {code.upper()}".strip()
