"""Unit tests run on the database alone: the app they get starts neither the Stripe double nor Redis."""
import pytest


@pytest.fixture
def app_config(database_config):
    """An app on a fresh migrated database; a unit test that needs Redis asks for redis_server itself."""
    return database_config
