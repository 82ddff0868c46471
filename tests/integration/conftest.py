"""Fixtures only integration tests use: pages read after a worker ran, the app's log records, Ada's
story replayed through every connected resource, and imports without their rate limit."""
import pytest

from tests.helpers import FAST, STORY, kind_for


@pytest.fixture
def get_page(auth_client):
    """A page as the admin after a worker ended the shared session (drops the user Flask-Login cached on g)."""
    from flask import g

    def get(url):
        g.pop("_login_user", None)
        resp = auth_client.get(url)
        assert resp.status_code == 200, resp.status_code
        return resp.get_data(as_text=True)

    return get


@pytest.fixture
def app_logs(caplog):
    """caplog for webapp loggers, which Alembic's fileConfig disabled when the test database was migrated."""
    import logging

    disabled = [lg for name, lg in logging.Logger.manager.loggerDict.items()
                if name.startswith("webapp") and isinstance(lg, logging.Logger) and lg.disabled]
    for lg in disabled:
        lg.disabled = False
    caplog.set_level(logging.INFO, logger="webapp")
    yield caplog
    for lg in disabled:
        lg.disabled = True


@pytest.fixture
def story(app, connect_all, post_event, run_worker):
    """Every resource connected and a function that replays Ada's story (or part of it)."""
    app.config.update(FAST)
    resources = connect_all()

    def replay(names=STORY):
        for name in names:
            resp = post_event(resources[kind_for(name)], name)
            assert resp.status_code == 200, (name, resp.get_json())
        run_worker()
    return replay


@pytest.fixture
def fast(app):
    """Historical imports without their rate limit and with short backoffs, so they finish in a test's time."""
    app.config.update(STRIPE_BUDGET_TEST=0, BACKFILL_BACKOFF_BASE=0.01, BACKFILL_BACKOFF_MAX=0.05)
