"""Hypothesis settings and strategies the fuzz tests share (kept out of tests/helpers.py, so only
the fuzz tests import hypothesis)."""
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
text = st.text(st.characters(codec="utf-8"), max_size=300)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=300)  # what HTTP can carry
# Every numeric parameter also draws digits str.isdigit() accepts but int() refuses or reads although they
# are not ASCII, values past an id column on PostgreSQL (2**31) and SQLite (2**63), and a string past
# Python's 4,300-digit conversion limit.
CRAFTED_NUMBERS = ["²", "¹²", "١٢٣", "٣", "０", "１２", "𝟙", str(2 ** 31 - 1), str(2 ** 31), str(2 ** 63),
                   str(2 ** 63 + 1), str(2 ** 64), "9" * 5000, "0", "-1", "1e3"]
numbers = st.one_of(st.sampled_from(CRAFTED_NUMBERS), st.integers(min_value=-2 ** 70, max_value=2 ** 70).map(str),
                    st.text("0123456789²³¹٠١٢٣٤٥٦٧٨٩０１２", max_size=30), text)
