"""Credentials block for the Equinix SmartView stream subscription APIs."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from streamkeeper.vendors.equinix import EquinixClient
from streamkeeper.vendors.http import CallRecorder


class EquinixCredentials(Block):
    """OAuth2 client credentials for Equinix SmartView stream subscriptions.

    The client id and secret come from the Equinix developer portal; the client exchanges them for a
    bearer token (client-credentials grant) and renews it before it expires. `api_generation` says which
    subscription API the organisation uses: ``streams`` (the seed's, one subscription per organisation; the
    default) or ``streaming`` (the current API; ingest pulls every subscription's messages, whatever its
    channel, beside what its webhook delivers).

    Every field, and how to fill it in for the sandbox: ``docs/blocks.md`` in the streamkeeper repository.

    Example:
        Load stored Equinix credentials:
        ```python
        from blocks.equinix import EquinixCredentials

        equinix_credentials_block = EquinixCredentials.load("BLOCK_NAME")
        client = equinix_credentials_block.get_client()
        ```
    """

    _block_type_name = "Equinix SmartView Credentials"
    _block_type_slug = "streamkeeper-equinix-credentials"

    base_url: str = Field(
        default="https://api.equinix.com",
        description="Root of the Equinix API, e.g. https://api.equinix.com.",
    )
    client_id: str = Field(description="OAuth2 client id of the Equinix developer app.")
    client_secret: SecretStr = Field(
        description="OAuth2 client secret of the Equinix developer app, exchanged for a bearer token."
    )
    api_generation: Literal["streams", "streaming"] = Field(
        default="streams",
        description=(
            "Subscription API of the organisation: streams (/smartview/v2/streams, one subscription per "
            "organisation; the default) or streaming (/smartview/v2/streaming, every channel's data pulled)."
        ),
    )
    timeout_seconds: float = Field(default=30.0, description="Timeout of each HTTP request, in seconds.")

    def get_client(self, recorder: CallRecorder | None = None) -> EquinixClient:
        """Build an `EquinixClient`; the client secret is unwrapped here and nowhere else."""
        return EquinixClient(
            self.base_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            api_generation=self.api_generation,
            timeout=self.timeout_seconds,
            recorder=recorder,
        )
