"""Request bodies past MAX_CONTENT_LENGTH, sent to the app served as in production (gunicorn, as the
Procfile runs it): a 413 after reading at most the limit plus one byte, whatever the transfer encoding, while the
serving process's memory stays flat; the webhook fast lane looks the token up before reading a byte."""
import io
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from flask import request as flask_request
from sqlalchemy import func, select as sql_select
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.test import EnvironBuilder

from tests.helpers import load_event, sign
from webapp.config import ROOT, defaults, from_environment
from webapp.stripe_sync.models import StripeEvent

MB = 1024 * 1024
HUGE = 256 * MB  # what an attacker streams; far more than the worker may hold
FLAT = 48 * MB   # how much the serving process's peak memory may grow meanwhile (the limit is 1 MB)
PIECE = b"a" * (64 * 1024)


def stored(db):
    db.session.rollback()
    return db.session.scalar(sql_select(func.count()).select_from(StripeEvent))


# --- the app served by gunicorn on a loopback port --------------------------------------------------

class Gunicorn:
    """gunicorn serving app:app on this test's database and Redis, on a socket bound before it starts."""

    def __init__(self, app, log_path):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": app.config["DATABASE_URL"], "REDIS_URL": app.config["REDIS_URL"],
               "SECRET_KEY": app.config["SECRET_KEY"], "ENCRYPTION_KEY": app.config["ENCRYPTION_KEY"],
               "STRIPE_API_BASE": app.config["STRIPE_API_BASE"], "WEBHOOK_CACHE_SECONDS": "0"}
        env.pop("MAX_CONTENT_LENGTH", None)  # the default limit is what is tested
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--bind", f"fd://{listener.fileno()}", "--workers", "1",
                 "--threads", "4", "--no-control-socket", "app:app"],
                cwd=ROOT, env=env, pass_fds=(listener.fileno(),), stdout=log, stderr=subprocess.STDOUT)
        listener.close()
        self.log_path = log_path
        try:
            self.worker = self._wait_for_worker()
        except BaseException:
            self.stop()  # a server that never answered is not left running
            raise

    def _wait_for_worker(self) -> int:
        """The worker's pid, once it answers."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            children = [int(p) for p in open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read().split()]
            if children:
                status, _ = request(self.port, b"GET /login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                if status is not None:
                    return children[0]
            time.sleep(0.1)
        raise AssertionError("gunicorn did not start:\n" + self.log_path.read_text())

    def peak_memory(self) -> int:
        """The worker's peak resident memory (VmHWM), in bytes."""
        for line in open(f"/proc/{self.worker}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def server(app, tmp_path):
    served = Gunicorn(app, tmp_path / "gunicorn.log")
    yield served
    served.stop()


def request(port, head: bytes, parts=(), chunked=False, end=True, wait=10.0) -> tuple[int | None, bytes]:
    """Send a request head and then the body parts (chunk-framed when chunked; `end=False` never ends the
    body) as a client streaming from a generator would, stopping as soon as the server answers or closes;
    returns (status, raw answer)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head)
    sock.setblocking(False)
    frames = ((b"%x\r\n" % len(p) + p + b"\r\n") if chunked else p for p in parts)
    pending, finished = b"", False
    try:
        while True:
            readable, writable, _ = select.select([sock], [sock], [], wait)
            if readable or not writable:
                break  # the server answered or closed (or stalls): stop sending
            if not pending:
                pending = next(frames, None)
                if pending is None:
                    if not end:
                        select.select([sock], [], [], wait)
                        break
                    pending, finished = (b"0\r\n\r\n" if chunked else b""), True
            pending = pending[sock.send(pending):] if pending else b""
            if finished and not pending:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.setblocking(True)
    sock.settimeout(wait)
    answer = b""
    try:
        while part := sock.recv(65536):
            answer += part
    except (ConnectionResetError, TimeoutError, socket.timeout):
        pass
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else None
    return status, answer


def head(path: str, content_type: str, *extra: str, length: int | None = None) -> bytes:
    """A request head; chunked unless a length is given."""
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}", framing,
             "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def huge(first: bytes = b"") -> Iterator[bytes]:
    """HUGE bytes from a generator, never held at once."""
    if first:
        yield first  # an empty chunk would end a chunked body
    for _ in range(HUGE // len(PIECE)):
        yield PIECE


def pieces(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """The bytes in parts, as a client streams them."""
    return (data[i:i + size] for i in range(0, len(data), size))


# --- the configured limit ---------------------------------------------------------------------------

def test_the_body_limit_is_a_setting_of_about_one_megabyte():
    assert defaults()["MAX_CONTENT_LENGTH"] == MB
    assert from_environment({"MAX_CONTENT_LENGTH": "2097152"}) == {"MAX_CONTENT_LENGTH": 2 * MB}


def test_the_fast_lane_follows_the_configured_limit(app, connect_resource, post_event, db):
    resource = connect_resource("customer")
    event = load_event("customer.created")
    event["data"]["object"]["description"] = "x" * 20_000
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    resp = post_event(resource, json.dumps(event).encode())
    assert resp.status_code == 413 and resp.get_json() == {"error": "body too large"}
    assert stored(db) == 0


class CountingInput(io.BytesIO):
    """A server's de-chunked input stream that remembers how much was read from it."""

    taken = 0

    def read(self, size=-1):
        data = super().read(size)
        self.taken += len(data)
        return data

    def readinto(self, buffer):
        size = super().readinto(buffer)
        self.taken += size
        return size


def streamed_environ(path: str, body: bytes, content_type: str, **headers) -> dict:
    """The environ gunicorn gives a chunked request: no CONTENT_LENGTH, the stream ended by the server."""
    environ = EnvironBuilder(path=path, method="POST", content_type=content_type, headers=headers).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True,
                    "wsgi.input": CountingInput(body)})
    return environ


def call(app, environ) -> tuple[str, bytes]:
    """The app (its fast lane first) called as the server calls it."""
    statuses = []
    body = b"".join(app.wsgi_app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    return statuses[0], body


def test_the_fast_lane_reads_a_streamed_body_whole_up_to_the_limit_and_one_byte_past_it_at_most(
        app, connect_resource, db):
    resource = connect_resource("customer")
    payload = json.dumps(load_event("customer.created")).encode()
    signature = sign(payload, resource.secrets[0])
    app.config["MAX_CONTENT_LENGTH"] = len(payload)
    environ = streamed_environ(resource.url, payload, "application/json", **{"Stripe-Signature": signature})
    assert call(app, environ)[0] == "200 OK" and stored(db) == 1
    app.config["MAX_CONTENT_LENGTH"] = len(payload) - 1
    environ = streamed_environ(resource.url, payload + b" " * (8 * MB), "application/json",
                               **{"Stripe-Signature": signature})
    status, body = call(app, environ)
    assert (status, json.loads(body)) == ("413 REQUEST ENTITY TOO LARGE", {"error": "body too large"})
    assert environ["wsgi.input"].taken == len(payload)  # the limit plus one byte
    assert stored(db) == 1


def test_a_streamed_form_is_parsed_whole_up_to_the_limit_and_refused_past_it(app):
    for size in (MB, MB + 1):
        environ = streamed_environ("/login", b"a=" + b"b" * (size - 2), "application/x-www-form-urlencoded")
        with app.request_context(environ):
            if size <= MB:
                assert len(flask_request.form["a"]) == size - 2
            else:  # Werkzeug alone would parse the first MB as if it were the whole form
                with pytest.raises(RequestEntityTooLarge):
                    flask_request.form
                assert environ["wsgi.input"].taken == MB + 1


# --- chunked bodies over the limit, on a real server ------------------------------------------------

def test_huge_chunked_body_to_the_webhook_is_413_with_flat_memory(server, connect_resource, db):
    resource = connect_resource("customer")
    small = json.dumps(load_event("customer.created")).encode()
    status, _ = request(server.port, head(resource.url, "application/json",
                                          f"Stripe-Signature: {sign(small, resource.secrets[0])}"),
                        pieces(small, 1000), chunked=True)
    assert status == 200 and stored(db) == 1  # a chunked delivery within the limit is read whole
    before = server.peak_memory()
    started = time.monotonic()
    status, answer = request(server.port, head(resource.url, "application/json", "Stripe-Signature: t=1,v1=00"),
                             huge(), chunked=True)
    assert status == 413, answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"error": "body too large"}
    assert server.peak_memory() - before < FLAT
    assert time.monotonic() - started < 10


def test_signed_event_over_the_limit_sent_chunked_is_refused_and_not_stored(server, connect_resource, db):
    resource = connect_resource("customer")
    event = load_event("customer.created")
    event["data"]["object"]["description"] = "x" * (3 * MB)
    payload = json.dumps(event).encode()
    status, answer = request(server.port, head(resource.url, "application/json",
                                               f"Stripe-Signature: {sign(payload, resource.secrets[0])}"),
                             pieces(payload), chunked=True)
    assert status == 413, answer[:300]
    assert stored(db) == 0
    # Declared with Content-Length, it is refused before a byte is read, as before.
    status, _ = request(server.port, head(resource.url, "application/json",
                                          f"Stripe-Signature: {sign(payload, resource.secrets[0])}",
                                          length=len(payload)))
    assert status == 413 and stored(db) == 0


def test_unknown_token_is_404_before_the_body_is_read(server, connect_resource):
    connect_resource("customer")
    # Only the first chunk is sent and the body never ends: the answer cannot wait for it.
    started = time.monotonic()
    status, answer = request(server.port, head("/webhooks/stripe/" + "x" * 43, "application/json"),
                             [b"{" * 1000], chunked=True, end=False, wait=5)
    assert status == 404, answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"error": "unknown webhook endpoint"}
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("content_type, first", [
    ("application/x-www-form-urlencoded", b"email=a%40example.com&password="),
    ("multipart/form-data; boundary=xyz",
     b'--xyz\r\nContent-Disposition: form-data; name="password"; filename="p"\r\n\r\n'),
])
def test_huge_chunked_form_to_login_is_the_friendly_413_with_flat_memory(server, content_type, first):
    before = server.peak_memory()
    started = time.monotonic()
    status, answer = request(server.port, head("/login", content_type), huge(first), chunked=True)
    assert status == 413, answer[:300]
    assert b"Too large" in answer and b"The request was larger than this app accepts." in answer
    assert server.peak_memory() - before < FLAT
    assert time.monotonic() - started < 10
