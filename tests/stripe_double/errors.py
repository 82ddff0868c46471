"""Stripe-shaped API errors, so the SDK under test parses the double's failures exactly as real ones."""

from __future__ import annotations

DOCS_ERRORS = "https://stripe.com/docs/error-codes/"

MISSING_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization header, "
    "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/."
)
PUBLISHABLE_KEY_MESSAGE = (
    "This API call cannot be made with a publishable API key. Please use a secret API key. "
    "You can find a list of your API keys at https://dashboard.stripe.com/account/apikeys."
)
RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits."
)
LOCK_TIMEOUT_MESSAGE = (
    "This object cannot be accessed right now because another API request or Stripe process is currently "
    "accessing it. If you see this error intermittently, retry the request. If you see this error frequently "
    "and are making multiple concurrent requests to a single object, make your requests serially or at a "
    "lower rate."
)
API_ERROR_MESSAGE = "An unknown error occurred"


class StripeError(Exception):
    """An error response the WSGI app turns into Stripe's JSON envelope with the right status and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict | None = None,
        log_url: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.log_url = log_url

    def body(self, request_log_url: str | None) -> dict:
        """Build the envelope with Stripe's key order (code, doc_url, message, param, request_log_url, type)."""
        err: dict = {}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = DOCS_ERRORS + self.code.replace("_", "-")
        err["message"] = self.message
        if self.param is not None:
            err["param"] = self.param
        if request_log_url and self.log_url:
            err["request_log_url"] = request_log_url
        err["type"] = self.type
        return {"error": err}


def mask_key(key: str) -> str:
    """Mask a key the way Stripe echoes it: the first 8 characters and the last 4 survive."""
    if len(key) > 12:
        return key[:8] + "*" * (len(key) - 12) + key[-4:]
    if len(key) > 4:
        return "*" * (len(key) - 4) + key[-4:]
    return "*" * len(key)


def invalid_key(key: str) -> StripeError:
    """401 for a key Stripe has never issued."""
    return StripeError(401, f"Invalid API Key provided: {mask_key(key)}", log_url=False)


def expired_key(key: str) -> StripeError:
    """401 for a key that was rolled or deleted."""
    return StripeError(
        401,
        f"Expired API Key provided: {mask_key(key)}. Platform access may have been revoked.",
        code="api_key_expired",
        log_url=False,
    )


def missing_key() -> StripeError:
    """401 when no credentials were sent at all."""
    return StripeError(401, MISSING_KEY_MESSAGE, headers={"WWW-Authenticate": 'Basic realm="Stripe"'}, log_url=False)


def publishable_key() -> StripeError:
    """401 when a pk_ key calls a secret-key endpoint."""
    return StripeError(401, PUBLISHABLE_KEY_MESSAGE, log_url=False)


def missing_permission(key: str, account_id: str, permission: str) -> StripeError:
    """403 for a restricted key lacking the permission the endpoint needs, naming it as Stripe does."""
    return StripeError(
        403,
        f"The provided key '{mask_key(key)}' does not have the required permissions for this endpoint on "
        f"account '{account_id}'. Having the '{permission}' permission would allow this request to continue.",
    )


def no_account_access(key: str, account_id: str) -> StripeError:
    """403 when Stripe-Account names an account this key cannot act on."""
    return StripeError(
        403,
        f"The provided key '{mask_key(key)}' does not have access to account '{account_id}' "
        "(or that account does not exist). Application access may have been revoked.",
    )


def resource_missing(noun: str, object_id: str, param: str = "id", other_mode: bool | None = None) -> StripeError:
    """404 resource_missing, mentioning the other mode when the id exists there, as Stripe does."""
    message = f"No such {noun}: '{object_id}'"
    if other_mode is True:
        message += "; a similar object exists in live mode, but a test mode key was used to make this request."
    elif other_mode is False:
        message += "; a similar object exists in test mode, but a live mode key was used to make this request."
    return StripeError(404, message, code="resource_missing", param=param)


def unrecognized_url(method: str, path: str) -> StripeError:
    """404 for a route Stripe (or this double) does not serve."""
    return StripeError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at "
        "https://support.stripe.com/.",
    )


def unknown_parameter(param: str) -> StripeError:
    """400 for a parameter the endpoint does not take."""
    return StripeError(400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param)


def missing_parameter(param: str) -> StripeError:
    """400 for a required parameter that was not sent."""
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def invalid_integer(param: str, value: str) -> StripeError:
    """400 for a parameter that should be an integer."""
    return StripeError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param)


def invalid_enum(param: str, choices) -> StripeError:
    """400 for a value outside an enum, listing the choices as Stripe does."""
    items = sorted(choices)
    listed = ", ".join(items[:-1]) + f", or {items[-1]}" if len(items) > 1 else items[0]
    return StripeError(400, f"Invalid {param}: must be one of {listed}", param=param)


def unsupported(what: str, param: str | None = None) -> StripeError:
    """400 for something real Stripe accepts but this double does not implement, so tests fail loudly."""
    return StripeError(
        400,
        f"Stripe double: {what} is valid in Stripe but not implemented by this double.",
        code="double_unsupported",
        param=param,
    )


def rate_limited() -> StripeError:
    """429 as Stripe answers when the request rate limit is exceeded (the SDK does not retry these)."""
    return StripeError(429, RATE_LIMIT_MESSAGE, code="rate_limit")


def lock_timeout() -> StripeError:
    """429 lock_timeout, which Stripe marks retryable, so the SDK retries it."""
    return StripeError(429, LOCK_TIMEOUT_MESSAGE, code="lock_timeout", headers={"Stripe-Should-Retry": "true"})


def api_error(status: int = 500) -> StripeError:
    """5xx api_error, which the SDK retries when max_network_retries allows."""
    return StripeError(status, API_ERROR_MESSAGE, type="api_error")
