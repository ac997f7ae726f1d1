"""Authentication for vendor clients, as httpx auth flows.

`TokenAuth` is the shape every token-based vendor shares: it attaches a cached token, refreshes it at
least `refresh_margin` seconds before it expires, and when a request still comes back 401 it refreshes
once and resends once. Refreshes are single-flight: when several threads share a client, one fetches
and the others wait for its token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from streamkeeper.vendors.http.redact import register_secret


@dataclass(frozen=True)
class Token:
    """An access token and when it expires (epoch seconds).

    `extra` holds vendor-specific companions (a ThingSpace session token, a Stream refresh token), also
    as `SecretStr`.
    """

    value: SecretStr
    expires_at: float
    extra: dict[str, SecretStr] = field(default_factory=dict)

    def __post_init__(self) -> None:
        register_secret(self.value.get_secret_value())
        for secret in self.extra.values():
            register_secret(secret.get_secret_value())


TokenFetcher = Callable[[Token | None], Token]
"""Fetches a new token; receives the stale token (or None) so that it can use a refresh token."""

TokenApplier = Callable[[httpx.Request, Token], None]


def bearer(request: httpx.Request, token: Token) -> None:
    """Put the token in ``Authorization: Bearer``."""
    request.headers["Authorization"] = f"Bearer {token.value.get_secret_value()}"


class TokenAuth(httpx.Auth):
    """Cached, refreshed, single-flight token auth.

    Args:
        fetch: gets a new token (it makes its own HTTP call without this auth).
        apply: writes the token into a request; defaults to a bearer header.
        refresh_margin: refresh when the token expires within this many seconds.
        clock: time source (for tests of expiry).
    """

    def __init__(
        self,
        fetch: TokenFetcher,
        apply: TokenApplier = bearer,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._apply = apply
        self._margin = refresh_margin
        self._clock = clock
        self._token: Token | None = None
        self._lock = threading.Lock()
        self.refreshes = 0

    @property
    def token(self) -> Token | None:
        """The cached token, if any."""
        return self._token

    def current(self) -> Token:
        """A token valid for at least the refresh margin, fetching one if needed."""
        token = self._token
        if token is not None and token.expires_at - self._clock() > self._margin:
            return token
        return self.refresh(stale=token)

    def refresh(self, stale: Token | None) -> Token:
        """Fetch a new token, unless another thread already replaced `stale`."""
        with self._lock:
            token = self._token
            if token is not None and token is not stale and token.expires_at - self._clock() > self._margin:
                return token
            self._token = self._fetch(token)
            self.refreshes += 1
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token, so the next call fetches one."""
        with self._lock:
            self._token = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.current()
        self._apply(request, token)
        response = yield request
        if response.status_code == 401:
            token = self.refresh(stale=token)
            self._apply(request, token)
            yield request


class HeaderAuth(httpx.Auth):
    """A fixed header on every request (PLT's ``partner_id``)."""

    def __init__(self, name: str, value: SecretStr) -> None:
        self._name = name
        self._value = value
        register_secret(value.get_secret_value())

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._name] = self._value.get_secret_value()
        yield request


def basic_auth(username: str, password: SecretStr) -> httpx.BasicAuth:
    """HTTP Basic auth, with the password registered for redaction."""
    register_secret(password.get_secret_value())
    return httpx.BasicAuth(username, password.get_secret_value())
