"""MAX_CONTENT_LENGTH for request bodies sent without a Content-Length (chunked) too.

Werkzeug 3.1 caps such a body at MAX_CONTENT_LENGTH when the server de-chunks it and says so
(`wsgi.input_terminated`, as gunicorn and Werkzeug's server do), but reading the whole body then just
stops at the cap: a form is parsed from its first MAX_CONTENT_LENGTH bytes as if they were all of it
(a login form of 300 MB was answered "CSRF token missing"). Here the first byte past the cap raises
RequestEntityTooLarge, which the app answers with its 413 page; nothing after that byte is read.
(The webhook fast lane reads its bodies itself, with the same cap: webhooks/fastlane.py.)"""
import typing as t

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream


class CappedStream(LimitedStream):
    """A streamed body allowed `cap` bytes: reading one more (and never any after it) is a 413."""

    def __init__(self, stream: t.IO[bytes], cap: int):
        super().__init__(stream, cap + 1, is_max=True)
        self.cap = cap

    def readinto(self, b) -> int | None:  # every read of a LimitedStream ends here
        size = super().readinto(b)
        if self.tell() > self.cap:
            raise RequestEntityTooLarge()
        return size


class BoundedRequest(Request):
    """Flask's request, with a streamed body past MAX_CONTENT_LENGTH refused instead of cut short."""

    @cached_property
    def stream(self) -> t.IO[bytes]:
        """Werkzeug's guarded stream; a body without Content-Length that the server ends is a CappedStream."""
        cap = self.max_content_length
        if (cap is not None and self.content_length is None and not self.shallow
                and "wsgi.input_terminated" in self.environ):
            return CappedStream(self.environ["wsgi.input"], cap)
        return super().stream
