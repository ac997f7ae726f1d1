"""Errors raised by the shared HTTP layer and the vendor clients.

    StreamkeeperError
    └── VendorError                   a vendor call failed (.vendor, .operation)
        ├── RequestInvalid            our own request failed validation; nothing was sent
        ├── VendorUnreachable         no usable answer: connection refused or dropped, DNS, TLS, timeout
        ├── MalformedResponse         an answer that is not the documented shape
        └── VendorHTTPError           the vendor answered with an error status (.status, .code, .detail)
            ├── AuthenticationFailed  401 (after one token refresh and resend)
            ├── PermissionDenied      403
            ├── NotFound              404
            ├── Conflict              409, 422
            ├── PreconditionFailed    412, 428
            ├── RateLimited           429 (after retries)
            └── ServerError           5xx (after retries)

Every message is built from redacted text: no secret reaches an exception.
"""

from __future__ import annotations

from streamkeeper.errors import StreamkeeperError


class VendorError(StreamkeeperError):
    """A call to a vendor failed.

    Attributes:
        vendor: short vendor name (``dma``, ``plt``, ``stream``, ``thingspace``, ``equinix``).
        operation: the client operation that failed, e.g. ``update_subscription``.
    """

    transient = False
    """Whether trying again later may succeed (no answer, 429, 5xx); False for our mistakes and refusals."""

    def __init__(self, vendor: str, operation: str, message: str) -> None:
        self.vendor = vendor
        self.operation = operation
        self.message = message
        super().__init__(f"{vendor} {operation}: {message}")


class RequestInvalid(VendorError):
    """Our own request did not validate; nothing was sent."""


class VendorUnreachable(VendorError):
    """The vendor could not be reached or did not answer (connection, TLS, timeout)."""

    transient = True


class MalformedResponse(VendorError):
    """The vendor answered, but not in the documented shape."""


class VendorHTTPError(VendorError):
    """The vendor answered with an error status.

    Attributes:
        status: the HTTP status code.
        code: the vendor's own error code, when its error body has one.
        detail: the vendor's error description (redacted).
    """

    def __init__(
        self, vendor: str, operation: str, status: int, code: str | None = None, detail: str | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        text = f"HTTP {status}"
        if code:
            text += f" {code}"
        if detail:
            text += f": {detail}"
        super().__init__(vendor, operation, text)


class AuthenticationFailed(VendorHTTPError):
    """401: the credentials were refused, even after one refresh."""


class PermissionDenied(VendorHTTPError):
    """403: authenticated, but not allowed."""


class NotFound(VendorHTTPError):
    """404: no such resource."""


class Conflict(VendorHTTPError):
    """409 or 422: the request conflicts with the vendor's rules or state."""


class PreconditionFailed(VendorHTTPError):
    """412 or 428: a required or matching ETag was missing or stale."""


class RateLimited(VendorHTTPError):
    """429, still refused after the retries."""

    transient = True


class ServerError(VendorHTTPError):
    """5xx, still failing after the retries."""

    transient = True


_BY_STATUS: dict[int, type[VendorHTTPError]] = {
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: Conflict,
    412: PreconditionFailed,
    428: PreconditionFailed,
    429: RateLimited,
}


def error_class_for(status: int) -> type[VendorHTTPError]:
    """The exception class for an HTTP error status."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, VendorHTTPError)
