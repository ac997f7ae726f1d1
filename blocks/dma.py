"""Credentials block for a Polycom RealPresence DMA's REST API."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from streamkeeper.vendors.dma import DMAClient, MediaFormat
from streamkeeper.vendors.http import CallRecorder, tls_verify


class DMACredentials(Block):
    """Connection and HTTP Basic credentials for a Polycom RealPresence DMA.

    The DMA usually serves a self-signed certificate: put its PEM in `ca_bundle` to trust it. TLS
    verification is never turned off.

    Every field, and how to fill it in for the sandbox: ``docs/blocks.md`` in the streamkeeper repository.

    Example:
        Load stored DMA credentials:
        ```python
        from blocks.dma import DMACredentials

        dma_credentials_block = DMACredentials.load("BLOCK_NAME")
        client = dma_credentials_block.get_client()
        ```
    """

    _block_type_name = "Polycom DMA Credentials"
    _block_type_slug = "streamkeeper-dma-credentials"

    base_url: str = Field(
        description="Root of the DMA REST API, e.g. https://dma.example.com:8443/api/rest.",
    )
    username: str = Field(
        description="DMA user name (a Provisioner or Administrator sees all subscriptions)."
    )
    password: SecretStr = Field(description="DMA password, sent with HTTP Basic auth.")
    ca_bundle: str | None = Field(
        default=None,
        description="PEM text of the CA certificate(s) to trust for the DMA's TLS certificate.",
    )
    media_format: MediaFormat = Field(
        default="json",
        description="Representation to exchange with the DMA: json or xml.",
    )
    timeout_seconds: float = Field(default=30.0, description="Timeout of each HTTP request, in seconds.")

    def get_client(self, recorder: CallRecorder | None = None) -> DMAClient:
        """Build a `DMAClient`; the password is unwrapped here and nowhere else."""
        return DMAClient(
            self.base_url,
            username=self.username,
            password=self.password,
            verify=tls_verify(self.ca_bundle),
            media_format=self.media_format,
            timeout=self.timeout_seconds,
            recorder=recorder,
        )
