"""Sign and POST webhook payloads as Stripe does, closed-loop at concurrency C or open-loop at a
fixed rate, and report throughput, latency percentiles and non-2xx answers.

Every payload goes to `path`, or with `paths` (one per payload) each to its own path, as Stripe
delivers each event type to the endpoint of the resource that subscribed to it."""
import hashlib
import hmac
import http.client
import multiprocessing as mp
import statistics
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


def sign(payload: bytes, secret: str) -> str:
    """Stripe-Signature for exactly these bytes, with the current time."""
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _post(conn, parts, path: str, body: bytes, headers: dict):
    """One POST on a keep-alive connection; a broken connection counts as 599 and is replaced."""
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, conn
    except (OSError, http.client.HTTPException):
        conn.close()
        return 599, http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)


@dataclass
class Result:
    """What one run measured."""

    sent: int
    seconds: float
    latencies_ms: list
    non_2xx: int
    first_send: float
    last_done: float

    @property
    def rate(self) -> float:
        """Requests answered per second."""
        return self.sent / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        """Latency percentile in ms."""
        data = sorted(self.latencies_ms)
        if not data:
            return 0.0
        return data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))]

    def summary(self) -> dict:
        """Figures for a table."""
        return {"requests": self.sent, "events_per_s": round(self.rate, 1), "p50_ms": round(self.pct(50), 2),
                "p95_ms": round(self.pct(95), 2), "p99_ms": round(self.pct(99), 2), "non_2xx": self.non_2xx,
                "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0}


def _paired(path: str, payloads: list[bytes], paths: list[str] | None) -> list[tuple[str, bytes]]:
    """(path, body) per payload."""
    if paths is None:
        return [(path, body) for body in payloads]
    if len(paths) != len(payloads):
        raise ValueError("paths must name one path per payload")
    return list(zip(paths, payloads))


def _worker(url: str, path: str, secret: str, payloads: list[bytes], threads: int, out,
            paths: list[str] | None = None):
    """One process: `threads` keep-alive connections sharing a slice of the payloads."""
    parts = urlsplit(url)
    lock = threading.Lock()
    queue = list(reversed(_paired(path, payloads, paths)))
    lat, bad, first, last = [], [0], [None], [0.0]

    def run():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while True:
            with lock:
                if not queue:
                    break
                target, body = queue.pop()
            headers = {"Content-Type": "application/json", "Stripe-Signature": sign(body, secret)}
            start = time.perf_counter()
            with lock:
                if first[0] is None:
                    first[0] = time.time()
            status, conn = _post(conn, parts, target, body, headers)
            ms = (time.perf_counter() - start) * 1000
            with lock:
                lat.append(ms)
                if not 200 <= status < 300:
                    bad[0] += 1
                last[0] = time.time()
        conn.close()

    _run_threads(run, threads)
    out.put((lat, bad[0], first[0] or time.time(), last[0]))


def _run_threads(target, n: int) -> None:
    """Run `target` on n threads at once and wait for all of them."""
    pool = [threading.Thread(target=target) for _ in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def closed_loop(url: str, path: str, secret: str, payloads: list[bytes], concurrency: int,
                processes: int = 2, paths: list[str] | None = None) -> Result:
    """Keep `concurrency` requests in flight until every payload is sent."""
    processes = max(1, min(processes, concurrency))
    slices = [payloads[i::processes] for i in range(processes)]
    path_slices = [paths[i::processes] if paths is not None else None for i in range(processes)]
    per = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    out = mp.Queue()
    procs = [mp.Process(target=_worker, args=(url, path, secret, s, t, out, ps))
             for s, t, ps in zip(slices, per, path_slices)]
    for p in procs:
        p.start()
    parts = [out.get() for _ in procs]
    for p in procs:
        p.join()
    lat = [x for part in parts for x in part[0]]
    first = min(p[2] for p in parts)
    last = max(p[3] for p in parts)
    return Result(len(lat), last - first, lat, sum(p[1] for p in parts), first, last)


def open_loop(url: str, path: str, secret: str, payloads: list[bytes], rate: float, threads: int = 16,
              paths: list[str] | None = None) -> Result:
    """Send at a fixed rate whatever the answers' speed, as Stripe's deliveries arrive."""
    parts = urlsplit(url)
    lat, bad = [], [0]
    lock = threading.Lock()
    start = time.perf_counter()
    first = time.time()
    schedule = [(start + i / rate, target, body) for i, (target, body) in enumerate(_paired(path, payloads, paths))]
    index = [0]

    def run():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while True:
            with lock:
                if index[0] >= len(schedule):
                    break
                due, target, body = schedule[index[0]]
                index[0] += 1
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            status, conn = _post(conn, parts, target, body, {"Content-Type": "application/json",
                                                            "Stripe-Signature": sign(body, secret)})
            with lock:
                lat.append((time.perf_counter() - sent) * 1000)
                if not 200 <= status < 300:
                    bad[0] += 1
        conn.close()

    _run_threads(run, threads)
    last = time.time()
    return Result(len(lat), last - first, lat, bad[0], first, last)
