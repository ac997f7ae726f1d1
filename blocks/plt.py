"""Credentials block for the Plantronics (PLT) partner Streams API."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from streamkeeper.vendors.http import CallRecorder
from streamkeeper.vendors.plt import DEFAULT_BASE_URL, PLTClient


class PLTCredentials(Block):
    """Partner credentials for the Plantronics (PLT) Streams API.

    PLT identifies a partner by the id it was given at registration, sent in a `partner_id` header on
    every call; it is the only credential, so it is kept as a secret.

    Every field, and how to fill it in for the sandbox: ``docs/blocks.md`` in the streamkeeper repository.

    Example:
        Load stored PLT credentials:
        ```python
        from blocks.plt import PLTCredentials

        plt_credentials_block = PLTCredentials.load("BLOCK_NAME")
        client = plt_credentials_block.get_client()
        ```
    """

    _block_type_name = "Plantronics PLT Credentials"
    _block_type_slug = "streamkeeper-plt-credentials"

    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="Root of the PLT Streams API, e.g. http://localhost:8090 for the sandbox.",
    )
    partner_id: SecretStr = Field(
        description="Partner id issued by PLT partner provisioning, sent in the partner_id header."
    )
    pubnub_origin: str | None = Field(
        default=None,
        description=(
            "PubNub origin the stream events are read from: None = the real PubNub; "
            "http://127.0.0.1:PORT for the sandbox's PubNub emulator."
        ),
    )
    timeout_seconds: float = Field(default=30.0, description="Timeout of each HTTP request, in seconds.")

    def get_client(self, recorder: CallRecorder | None = None) -> PLTClient:
        """Build a `PLTClient`; the partner id stays a `SecretStr` until the client sends it."""
        return PLTClient(
            self.base_url,
            partner_id=self.partner_id,
            timeout=self.timeout_seconds,
            recorder=recorder,
        )
