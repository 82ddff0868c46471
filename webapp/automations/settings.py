"""Tunables of automation runs and email delivery, with defaults, so config.py need not know them.

Each can be overridden in the app config (tests shrink the waits):
- AUTOMATION_RETRY_INTERVALS: seconds RQ waits before each retry of a failed run or entry job.
- AUTOMATION_JOB_TIMEOUT: seconds one run job may take.
- AUTOMATION_SWEEP_INTERVAL / AUTOMATION_SWEEP_GRACE: how often the worker sweeps automations,
  and how long a run, fired trigger or queued message may sit without its job before the sweep
  enqueues it again.
- SMTP_RETRY_INTERVALS: seconds between SMTP delivery attempts; a message fails for good after
  1 + len(intervals) attempts (the outbox can send it again by hand).
- SMTP_TIMEOUT: seconds for one SMTP conversation.
"""
from flask import current_app

DEFAULTS = {
    "AUTOMATION_RETRY_INTERVALS": [5, 30, 120, 600],
    "AUTOMATION_JOB_TIMEOUT": 120,
    "AUTOMATION_SWEEP_INTERVAL": 30,
    "AUTOMATION_SWEEP_GRACE": 60,
    "AUTOMATION_SWEEP_BATCH": 500,
    "SMTP_RETRY_INTERVALS": [30, 120, 600, 1800],
    "SMTP_TIMEOUT": 20,
}


def setting(name: str):
    """The app's value, else the default here, so every caller agrees on one fallback."""
    return current_app.config.get(name, DEFAULTS[name])


def intervals(name: str) -> list[int]:
    """RQ wants whole, non-negative seconds."""
    return [max(0, int(s)) for s in setting(name)]
