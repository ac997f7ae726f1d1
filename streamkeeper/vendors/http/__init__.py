"""The shared HTTP layer of the vendor clients: client, auth, retry, errors, redaction, call records."""

from streamkeeper.vendors.http.auth import HeaderAuth, Token, TokenAuth, basic_auth, bearer
from streamkeeper.vendors.http.calls import ApiCall, CallRecorder
from streamkeeper.vendors.http.client import VendorClient, tls_verify
from streamkeeper.vendors.http.errors import (
    AuthenticationFailed,
    Conflict,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    RequestInvalid,
    ServerError,
    VendorError,
    VendorHTTPError,
    VendorUnreachable,
)
from streamkeeper.vendors.http.models import RequestModel, VendorModel, build_request
from streamkeeper.vendors.http.redact import redact, register_secret
from streamkeeper.vendors.http.retry import NO_RETRY, RetryPolicy, parse_retry_after

__all__ = [
    "NO_RETRY",
    "ApiCall",
    "AuthenticationFailed",
    "CallRecorder",
    "Conflict",
    "HeaderAuth",
    "MalformedResponse",
    "NotFound",
    "PermissionDenied",
    "PreconditionFailed",
    "RateLimited",
    "RequestInvalid",
    "RequestModel",
    "RetryPolicy",
    "ServerError",
    "Token",
    "TokenAuth",
    "VendorClient",
    "VendorError",
    "VendorHTTPError",
    "VendorModel",
    "VendorUnreachable",
    "basic_auth",
    "bearer",
    "build_request",
    "parse_retry_after",
    "redact",
    "register_secret",
    "tls_verify",
]
