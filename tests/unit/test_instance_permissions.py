"""Issue 13, finding 10: instance/ (database, Redis files, keys) is readable by its owner only."""
import os
import stat

import pytest

from webapp import config as config_module
from webapp import create_app, runner
from webapp.embedded_redis import RedisServer
from webapp.instance_secrets import encryption_key, secret_key


def mode(path) -> int:
    """The permission bits of a file or folder."""
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def usual_umask():
    """The umask most systems run with (022), so a default-mode creation would be world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_generated_keys_and_their_folder_are_owner_only(tmp_path):
    instance = tmp_path / "instance"
    secret_key(instance)
    encryption_key(instance)
    assert mode(instance) == 0o700
    assert mode(instance / "secret_key") == 0o600
    assert mode(instance / "encryption_key") == 0o600


def test_a_world_readable_folder_and_keys_from_an_older_version_are_tightened(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    os.chmod(instance, 0o755)
    (instance / "secret_key").write_text("kept-secret")
    os.chmod(instance / "secret_key", 0o644)
    assert secret_key(instance) == "kept-secret"
    assert mode(instance / "secret_key") == 0o600
    assert mode(instance) == 0o700


def test_create_app_makes_the_sqlite_instance_folder_owner_only(database_config, tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    os.chmod(instance, 0o755)
    monkeypatch.setattr(config_module, "INSTANCE", instance)
    app = create_app({**database_config, "INSTANCE_PATH": str(instance),
                      "DATABASE_URL": f"sqlite:///{instance / 'crm.sqlite3'}"})  # SQLite on either test run
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert mode(instance) == 0o700


def test_create_app_generates_owner_only_keys(database_config, tmp_path):
    instance = tmp_path / "fresh"
    create_app({**database_config, "INSTANCE_PATH": str(instance), "SECRET_KEY": None, "ENCRYPTION_KEY": None})
    assert mode(instance) == 0o700
    assert mode(instance / "secret_key") == 0o600 and mode(instance / "encryption_key") == 0o600


class StopHere(Exception):
    """Ends runner.main right after its set-up of instance/."""


def test_scripts_run_tightens_an_existing_world_readable_instance(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    os.chmod(instance, 0o755)
    monkeypatch.setattr(runner, "INSTANCE", instance)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(runner.signal, "signal", lambda *_args: None)

    def stop():
        raise StopHere

    monkeypatch.setattr(runner, "_stop_orphan", stop)
    with pytest.raises(StopHere):
        runner.main()
    assert mode(instance) == 0o700


def test_embedded_redis_keeps_its_append_only_files_owner_only(tmp_path):
    data = tmp_path / "redis"
    server = RedisServer(data_dir=data, persist=True).start()
    try:
        import redis
        redis.Redis.from_url(server.url).set("k", "v")
    finally:
        server.stop()
    files = list(data.rglob("*"))
    assert files, "redis-server wrote no append-only file"
    for path in files:
        assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"
    assert mode(data) == 0o700
