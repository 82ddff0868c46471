"""Polling for a condition a worker process makes true, with a deadline instead of a fixed sleep."""
import time


def wait_for(predicate, timeout: float = 30.0, every: float = 0.05) -> bool:
    """True as soon as predicate() is true; False when the timeout passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False
