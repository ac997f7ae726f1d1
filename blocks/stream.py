"""Credentials block for the Stream Partner API (restaurant ordering: POS, DSPs, onboarding)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from streamkeeper.vendors.http import CallRecorder
from streamkeeper.vendors.stream import DEFAULT_SCOPES, Scope, StreamClient, TokenInfo


class StreamCredentials(Block):
    """API credentials for the Stream Partner API.

    The client asks ``POST /oauth/token`` for an access token with the client id and secret, then renews
    it with the refresh token. Refresh tokens are single-use and rotate on every renewal: pass an
    `on_token` callback to `get_client` that writes ``info.refresh_token`` back to this block (the flows
    do) before it is used again.

    Every field, and how to fill it in for the sandbox: ``docs/blocks.md`` in the streamkeeper repository.

    Example:
        Load stored Stream credentials:
        ```python
        from blocks.stream import StreamCredentials

        stream_credentials_block = StreamCredentials.load("BLOCK_NAME")
        client = stream_credentials_block.get_client()
        ```
    """

    _block_type_name = "Stream Partner Credentials"
    _block_type_slug = "streamkeeper-stream-credentials"

    base_url: str = Field(
        description="Root of the Stream Partner API (given by Stream; not public), or the sandbox URL.",
    )
    client_id: str = Field(description="API key given by Stream, sent as client_id to the token endpoint.")
    client_secret: SecretStr = Field(
        description="API token given by Stream, sent as client_secret to the token endpoint."
    )
    refresh_token: SecretStr | None = Field(
        default=None,
        description="Latest refresh token; single-use, rotated on every renewal and written back by the flows.",
    )
    scopes: list[Scope] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES),
        description="Scopes to request: user, onboarding, legacy_onboarding, sso, billing.",
    )
    partner_id: str | None = Field(
        default=None,
        description="Your Stream partner id, sent as partner_id on SSO and feature-flag calls.",
    )
    timeout_seconds: float = Field(default=30.0, description="Timeout of each HTTP request, in seconds.")

    @field_validator("scopes", mode="before")
    @classmethod
    def _split_scopes(cls, value: Any) -> Any:
        """Accept ``user,onboarding`` as well as a list (``streamkeeper connect --set scopes=...``)."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def get_client(
        self,
        recorder: CallRecorder | None = None,
        on_token: Callable[[TokenInfo], None] | None = None,
    ) -> StreamClient:
        """Build a `StreamClient`; the secrets stay `SecretStr` until the client sends them.

        Args:
            recorder: where the client records its calls, for the ``api_calls`` table.
            on_token: called with each new token, before its refresh token is used; save
                ``info.refresh_token`` to this block there.
        """
        return StreamClient(
            self.base_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            refresh_token=self.refresh_token,
            scopes=self.scopes,
            partner_id=self.partner_id,
            on_token=on_token,
            timeout=self.timeout_seconds,
            recorder=recorder,
        )
