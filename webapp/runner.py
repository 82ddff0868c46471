"""`scripts/run`: migrations, an embedded Redis when REDIS_URL is unset, the RQ worker and the web app."""
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from webapp.config import INSTANCE, ROOT
from webapp.embedded_redis import RedisServer, free_port, port_is_free
from webapp.instance_secrets import private_dir

log = logging.getLogger("runner")
PID_FILE = INSTANCE / "redis.pid"


def _stop_orphan() -> None:
    """A previous run killed with SIGKILL may have left its redis-server behind: stop it."""
    try:
        pid = int(PID_FILE.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if b"redis-server" in cmdline:
        log.info("stopping redis-server %s left by an earlier run", pid)
        os.kill(pid, signal.SIGTERM)
    PID_FILE.unlink(missing_ok=True)


def _migrate() -> None:
    """Apply migrations before anything serves requests."""
    from flask_migrate import upgrade

    from webapp import create_app

    app = create_app()
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision="heads")


def main() -> int:
    """Start everything, print the address, and stop everything on Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    private_dir(INSTANCE)  # database, keys and Redis's files: owner-only, also for a folder made before
    env = dict(os.environ)
    redis_server = None
    children: list[subprocess.Popen] = []

    def shutdown(*_args):
        """Terminate children, then Redis, and forget the pid file."""
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_server is not None:
            redis_server.stop()
            PID_FILE.unlink(missing_ok=True)

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if not env.get("REDIS_URL"):
            _stop_orphan()
            port = 6379 if port_is_free(6379) else free_port()
            redis_server = RedisServer(port=port, data_dir=INSTANCE / "redis", persist=True).start()
            PID_FILE.write_text(str(redis_server.proc.pid))
            env["REDIS_URL"] = os.environ["REDIS_URL"] = redis_server.url
            log.info("embedded redis-server %s on %s", redis_server.proc.pid, redis_server.url)
        # Web and worker processes write their metrics here; /metrics adds them up. Made before the
        # migration, whose app (like every process) writes there as soon as it is set.
        metrics_dir = Path(env.get("PROMETHEUS_MULTIPROC_DIR") or INSTANCE / "prometheus")
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        _migrate()
        log.setLevel(logging.INFO)  # the migration's logging set-up raises the root level; keep our lines
        port = env.get("PORT", "5000")
        host = env.get("HOST", "127.0.0.1")
        children.append(subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT))
        children.append(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers",
             env.get("WEB_CONCURRENCY", "2"), "--threads", "4", "--access-logfile", "-", "app:app"],
            env=env, cwd=ROOT))
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
        log.info("Engine CRM is running: open http://%s:%s/  (Ctrl-C stops web, worker and Redis)", shown, port)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        log.error("a process exited; stopping the rest")
        return 1
    except KeyboardInterrupt:
        log.info("stopping")
        return 0
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
