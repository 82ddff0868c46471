"""Where an import cuts its history (windows.plan_split), what a 429 slows down (budget.Pacer), and the
time left the progress shows (windows.progress)."""
import time
import pytest
import redis as redis_lib

from webapp.stripe_sync.budget import Budget, Pacer
from webapp.stripe_sync.history.windows import Window, estimate, plan_split

RULE = dict(after_pages=2, window_pages=5, max_windows=64)


def page(newest, oldest, n=100):
    """n records spread evenly from `newest` down to `oldest`, newest first."""
    step = (newest - oldest) / max(1, n - 1)
    return [{"id": f"cus_{i}", "created": int(round(newest - i * step))} for i in range(n)]


def window(lo=0, hi=2_000_000_000, pages=1):
    return Window(id=1, lo=lo, hi=hi, cursor="cus_x", cursor_created=None, pages=pages, records=pages * 100)


class TestPlanSplit:
    def test_not_before_enough_pages_nor_when_the_window_is_read(self):
        assert plan_split(window(pages=0), page(1000, 901), True, 1, **RULE) is None  # first page: read on alone
        assert plan_split(window(pages=1), page(1000, 901), False, 1, **RULE) is None  # that was the last page
        assert plan_split(window(pages=1), page(1000, 901), True, 64, **RULE) is None  # enough windows open

    def test_keeps_a_few_pages_below_its_cursor_and_cuts_the_rest_into_doubling_windows(self):
        split = plan_split(window(lo=0, hi=100_001, pages=1), page(100_000, 99_901), True, 1, **RULE)
        # 100 records in 100 s: the window keeps 5 pages' worth (500 s) below its last record…
        assert split.new_lo == 99_901 - 500 + 1
        # …and the rest, down to its lower bound, becomes windows of 500, 1000, … seconds, newest first.
        tops = [hi for _, hi in split.pieces]
        assert tops[0] == split.new_lo and split.pieces[0] == (split.new_lo - 500, split.new_lo)
        assert split.pieces[1] == (split.new_lo - 1500, split.new_lo - 500)
        assert split.pieces[-1][0] == 0  # the last reaches down to the window's own lower bound
        assert all(lo < hi for lo, hi in split.pieces)
        assert all(a[0] == b[1] for a, b in zip(split.pieces, split.pieces[1:]))  # no gap, no overlap

    def test_a_bunched_second_stays_in_one_window(self):
        split = plan_split(window(lo=0, hi=1_705_000_100, pages=1), page(1_705_000_000, 1_705_000_000), True, 1,
                           **RULE)
        # 100 records in one second: the window keeps a few seconds, so the bunch is paged by its cursor
        assert split.new_lo <= 1_705_000_000 < 1_705_000_100
        assert all(hi <= split.new_lo for _, hi in split.pieces)

    def test_never_more_windows_than_allowed(self):
        split = plan_split(window(pages=1), page(100_000, 99_901), True, 61, **RULE)
        assert len(split.pieces) == 3 and split.pieces[-1][0] == 0

    def test_nothing_to_cut_at_the_lower_bound(self):
        assert plan_split(window(lo=901, hi=1001, pages=1), page(1000, 901), True, 1, **RULE) is None


@pytest.fixture
def conn(redis_server):
    c = redis_lib.Redis.from_url(redis_server.url)
    c.flushdb()
    return c


class TestPacer:
    def test_waits_for_every_budget(self, conn):
        endpoint = Budget(conn, "acct_x:test:list:/v1/customers", 10)  # 100 ms apart
        account = Budget(conn, "acct_x:test", 50)  # 20 ms apart
        pacer = Pacer(account, endpoint=endpoint)
        started = time.monotonic()
        for _ in range(3):
            pacer.wait()
        assert 0.19 <= time.monotonic() - started < 0.4  # the slower one sets the pace (20 ms apart: 0.04 s)

    def test_a_429_for_the_endpoint_slows_the_endpoint_only(self, conn):
        endpoint = Budget(conn, "acct_x:test:list:/v1/customers", 100)
        account = Budget(conn, "acct_x:test", 100)
        Pacer(account, endpoint=endpoint, slow_seconds=5).hold_off(0.3, "endpoint-rate")
        assert Budget(conn, "acct_x:test", 100).wait() == 0.0  # webhook retrieves go on
        assert 0.25 <= endpoint.wait() <= 0.35

    def test_a_global_429_holds_the_account_then_halves_its_rate_for_a_while(self, conn):
        account = Budget(conn, "acct_x:test", 100)  # 10 ms apart
        Pacer(account, slow_seconds=5).hold_off(0.05, "global-rate")
        time.sleep(0.06)
        first = account.wait()
        second = account.wait()
        assert first <= 0.005 and second == pytest.approx(0.02, abs=0.006)  # 20 ms apart now

    def test_no_reason_given_counts_as_the_account(self, conn):
        endpoint = Budget(conn, "acct_x:test:list:/v1/charges", 100)
        account = Budget(conn, "acct_x:test", 100)
        Pacer(account, endpoint=endpoint).hold_off(0.3, None)
        assert endpoint.wait() == 0.0 and 0.25 <= account.wait() <= 0.35

    def test_local_fallback_also_slows_down(self):
        budget = Budget(None, "k", 100)
        budget.hold_off(0.01, 5)
        time.sleep(0.02)
        assert budget.wait() == 0.0
        assert budget.wait() == pytest.approx(0.02, abs=0.006)


class TestProgress:
    NOW = 1_800_000_000

    def test_windows_read_and_time_left(self):
        now = self.NOW
        # 10,000 records read over the newest 10,000 s; 20,000 s of history still to read at that density.
        rows = [(now - 10_000, now + 300, "done", now - 9_990, 10_000),
                (now - 20_000, now - 10_000, "open", None, 0),
                (now - 30_000, now - 20_000, "open", None, 0)]
        shown = estimate(rows, 1000.0, now)
        assert (shown.windows_done, shown.windows_total) == (1, 3)
        assert shown.seconds_left == pytest.approx(20.0, rel=0.05)
        assert estimate(rows, None, now).seconds_left is None  # no rate yet: no guess

    def test_a_half_read_window_counts_from_its_cursor(self):
        now = self.NOW
        rows = [(now - 2_000, now + 300, "open", now - 1_000, 1_000)]  # read down to 1,000 s ago: half left
        assert estimate(rows, 100.0, now).seconds_left == pytest.approx(10.0, rel=0.05)

    def test_an_unexplored_oldest_window_counts_no_longer_than_what_was_read(self):
        now = self.NOW
        rows = [(now - 1_000, now + 300, "done", now - 999, 1_000), (0, now - 1_000, "open", None, 0)]
        assert estimate(rows, 100.0, now).seconds_left == pytest.approx(10.0, rel=0.05)  # not 57 years' worth

    def test_all_read(self):
        assert estimate([(0, 10, "done", 5, 3)], 100.0, self.NOW).seconds_left == 0.0
