"""`VendorClient`: the one HTTP client every vendor client is built on.

It owns an `httpx.Client` (sync: measured faster here than async under concurrency), and gives each call
timeouts, retries on 429/502/503/504 and transport failures with ``Retry-After``, auth (see `auth`),
the mapping of the vendor's error body to the exception tree of `errors`, redaction of secrets from
every message, and a record of the call for the ``api_calls`` table. The transport can be swapped.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from streamkeeper.validation import describe
from streamkeeper.vendors.http.calls import ApiCall, CallRecorder, now_utc
from streamkeeper.vendors.http.errors import (
    MalformedResponse,
    ServerError,
    VendorError,
    VendorHTTPError,
    VendorUnreachable,
    error_class_for,
)
from streamkeeper.vendors.http.redact import redact
from streamkeeper.vendors.http.retry import RetryPolicy, is_retryable_status

T = TypeVar("T")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_DETAIL_LIMIT = 300


def tls_verify(ca_bundle_pem: str | None) -> ssl.SSLContext | bool:
    """TLS verification: the system trust store, or a context trusting only the given PEM bundle.

    Verification is never turned off; a self-signed vendor certificate is trusted by giving its PEM.
    """
    if not ca_bundle_pem:
        return True
    try:
        return ssl.create_default_context(cadata=ca_bundle_pem)
    except ssl.SSLError as exc:
        from streamkeeper.errors import ConfigError

        raise ConfigError(f"the CA bundle is not a valid PEM certificate: {exc.reason or exc}") from None


@lru_cache(maxsize=256)
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


class VendorClient:
    """Base class of the vendor clients.

    Args:
        base_url: the vendor API root.
        auth: an httpx auth flow (see `streamkeeper.vendors.http.auth`).
        verify: TLS verification (see `tls_verify`).
        timeout: seconds for each request (connect timeout is at most 10 s).
        transport: an httpx transport to use instead of the network (tests, proxies).
        retry: the retry policy.
        recorder: where each attempt is recorded, for the ``api_calls`` table.
        sleep: the function used to wait between retries.
        max_response_bytes: the largest response body accepted; a larger one is `MalformedResponse`.
    """

    vendor: ClassVar[str] = "vendor"

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        recorder: CallRecorder | None = None,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_response_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_response_bytes = max_response_bytes
        self.auth = auth
        self.retry = retry or RetryPolicy()
        self.recorder = recorder if recorder is not None else CallRecorder()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            headers=dict(headers or {}),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=False,
        )

    # -- lifecycle -----------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        path_params: Mapping[str, object] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        auth: httpx.Auth | None | str = "default",
        retry: RetryPolicy | None = None,
    ) -> httpx.Response:
        """Send a request and return a response with a status below 400 (304 included).

        Args:
            method: HTTP method.
            path: the path template, e.g. ``/subscriptions/{id}``; recorded as is.
            operation: the client operation, named in errors and the call record.
            path_params: values for the template, URL-quoted.
            idempotent: whether a failure with no answer may be retried; defaults to True for GET, HEAD,
                OPTIONS, PUT and DELETE. A non-idempotent request is retried only on 429.
            auth: ``"default"`` for the client's auth, None for none, or another auth flow.

        Raises:
            VendorUnreachable: no answer after the retries.
            VendorHTTPError: an error status (the subclass tells which).
        """
        url = (
            path.format(**{k: quote(str(v), safe="") for k, v in path_params.items()})
            if path_params
            else path
        )
        idempotent = method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent
        policy = retry or self.retry
        request_auth: Any = self.auth if auth == "default" else auth
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                request = self._http.build_request(
                    method, url, params=params, json=json, content=content, data=data, headers=headers
                )
                response = self._read_capped(
                    self._http.send(request, auth=request_auth, stream=True), operation
                )
            except httpx.TransportError as exc:
                self._record(operation, method, path, None, started, attempt, type(exc).__name__)
                delay = policy.delay(attempt, None) if idempotent else None
                if delay is None:
                    error = VendorUnreachable(self.vendor, operation, self._describe_transport(exc))
                    error.transient = not _is_tls_trust_failure(exc)
                    raise error from None
                self._sleep(delay)
                continue
            self._record(operation, method, path, response.status_code, started, attempt, None)
            status = response.status_code
            if status < 400:
                return response
            if is_retryable_status(status) and (idempotent or status == 429):
                delay = policy.delay(attempt, response)
                if delay is not None:
                    response.close()
                    self._sleep(delay)
                    continue
            raise self.error_for(response, operation)

    def _read_capped(self, response: httpx.Response, operation: str) -> httpx.Response:
        """Read a streamed body, refusing one larger than `max_response_bytes`."""
        limit = self.max_response_bytes
        if response.is_stream_consumed:  # an auth flow that reads bodies has read this one already
            if len(response.content) > limit:
                raise MalformedResponse(
                    self.vendor, operation, f"response body exceeds the {limit}-byte limit"
                )
            return response
        try:
            declared = int(response.headers.get("content-length", "0") or 0)
            if declared > limit:
                raise MalformedResponse(
                    self.vendor,
                    operation,
                    f"response body of {declared} bytes exceeds the {limit}-byte limit",
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_raw():
                size += len(chunk)
                if size > limit:
                    raise MalformedResponse(
                        self.vendor, operation, f"response body exceeds the {limit}-byte limit"
                    )
                chunks.append(chunk)
        finally:
            response.close()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=_decode(b"".join(chunks), response.headers.get("content-encoding")),
            request=response.request,
            extensions=response.extensions,
        )

    def create(self, operation: str, do_create: Callable[[], T], lookup: Callable[[], T | None]) -> T:
        """Create a resource without ever creating it twice.

        A create that got no answer, or a 5xx, may still have created the resource; so before trying again
        this looks it up and returns what it finds.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return do_create()
            except (VendorUnreachable, ServerError):
                delay = self.retry.delay(attempt, None)
                if delay is None:
                    raise
                self._sleep(delay)
                found = lookup()
                if found is not None:
                    return found

    # -- parsing -------------------------------------------------------------------------------------------
    def parse(self, response: httpx.Response, tp: type[T], operation: str) -> T:
        """Parse a JSON answer into a pydantic type, or raise `MalformedResponse` naming what is wrong."""
        return self.validate(self.json_body(response, operation), tp, operation)

    def validate(self, data: Any, tp: type[T], operation: str) -> T:
        """Validate already-decoded data into a pydantic type, or raise `MalformedResponse`."""
        key: type = tp  # (mypy does not see a type[T] as Hashable, which the lru_cache wrapper asks for)
        try:
            adapter: TypeAdapter[T] = _adapter(key)
            return adapter.validate_python(data)
        except ValidationError as exc:
            raise MalformedResponse(
                self.vendor, operation, f"unexpected response shape: {redact(describe(exc))}"
            ) from None

    def json_body(self, response: httpx.Response, operation: str) -> Any:
        """The decoded JSON body, or `MalformedResponse`."""
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise MalformedResponse(
                self.vendor,
                operation,
                f"body is not valid JSON ({kind}, {len(response.content)} bytes, HTTP {response.status_code})",
            ) from None

    # -- errors --------------------------------------------------------------------------------------------
    def error_details(self, response: httpx.Response) -> tuple[str | None, str | None]:
        """The vendor's error code and description from an error body. Vendors override this."""
        try:
            body = response.json()
        except ValueError:
            return None, _text_snippet(response)
        if isinstance(body, dict):
            code = body.get("error") or body.get("errorCode") or body.get("code")
            detail = body.get("error_description") or body.get("errorMessage") or body.get("message")
            return (str(code) if code else None), (str(detail) if detail else None)
        return None, None

    def error_for(self, response: httpx.Response, operation: str) -> VendorHTTPError:
        """Map an error response to an exception, with the detail redacted and shortened."""
        try:
            code, detail = self.error_details(response)
        except Exception:  # an error body we cannot read must not hide the status
            code, detail = None, _text_snippet(response)
        if detail:
            detail = redact(detail)[:_DETAIL_LIMIT]
        if code:
            code = redact(code)[:80]
        return error_class_for(response.status_code)(
            self.vendor, operation, response.status_code, code, detail
        )

    def _describe_transport(self, exc: httpx.TransportError) -> str:
        text = str(exc) or type(exc).__name__
        if _is_tls_trust_failure(exc):
            text = f"TLS certificate of {self.base_url} is not trusted by the configured CA bundle ({text})"
        elif isinstance(exc, httpx.TimeoutException):
            text = f"no answer from {self.base_url} in time ({type(exc).__name__})"
        elif isinstance(exc, httpx.ConnectError):
            text = f"cannot connect to {self.base_url} ({text})"
        else:
            text = f"connection to {self.base_url} failed ({type(exc).__name__}: {text})"
        return redact(text)

    def _record(
        self,
        operation: str,
        method: str,
        path: str,
        status: int | None,
        started: float,
        attempt: int,
        error: str | None,
    ) -> None:
        self.recorder.record(
            ApiCall(
                vendor=self.vendor,
                operation=operation,
                method=method.upper(),
                path=path,
                status=status,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                attempt=attempt,
                error=error,
                called_at=now_utc(),
            )
        )


def _decode(body: bytes, encoding: str | None) -> bytes:
    """Undo a gzip/deflate content encoding (the raw stream is read to count the bytes on the wire)."""
    if not encoding or not body:
        return body
    import zlib

    encoding = encoding.lower().strip()
    if encoding == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    return body


def _is_tls_trust_failure(exc: Exception) -> bool:
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text


def _text_snippet(response: httpx.Response) -> str | None:
    kind = response.headers.get("content-type", "")
    if not response.content:
        return "empty body"
    if "html" in kind:
        return f"non-JSON error page ({kind}, {len(response.content)} bytes)"
    return response.text[:_DETAIL_LIMIT].strip() or None


__all__ = ["VendorClient", "VendorError", "tls_verify"]
