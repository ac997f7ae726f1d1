"""Credentials block for the Verizon ThingSpace Cloud Connector API."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from streamkeeper.vendors.http import CallRecorder
from streamkeeper.vendors.thingspace import ThingSpaceClient


class ThingSpaceCredentials(Block):
    """ThingSpace application key and secret, UWS login and billing account for the Cloud Connector.

    The client gets a one-hour API token with the application key and secret, then a VZ-M2M session
    with the UWS user name and password, and sends both on every Cloud Connector call.

    Every field, and how to fill it in for the sandbox: ``docs/blocks.md`` in the streamkeeper repository.

    Example:
        Load stored ThingSpace credentials:
        ```python
        from blocks.thingspace import ThingSpaceCredentials

        thingspace_credentials_block = ThingSpaceCredentials.load("BLOCK_NAME")
        client = thingspace_credentials_block.get_client()
        ```
    """

    _block_type_name = "ThingSpace Credentials"
    _block_type_slug = "streamkeeper-thingspace-credentials"

    base_url: str = Field(
        default="https://thingspace.verizon.com",
        description="Root of the ThingSpace API, e.g. https://thingspace.verizon.com.",
    )
    app_key: str = Field(
        description="ThingSpace application key, from Key Management in the ThingSpace portal."
    )
    app_secret: SecretStr = Field(
        description="ThingSpace application secret, sent with the application key to get API tokens."
    )
    username: str = Field(description="UWS user name used to start a VZ-M2M session.")
    password: SecretStr = Field(description="UWS password used to start a VZ-M2M session.")
    account_name: str = Field(
        description="Billing account id that targets and subscriptions belong to, e.g. 0000123456-00001 (keep leading zeroes).",
    )
    timeout_seconds: float = Field(default=30.0, description="Timeout of each HTTP request, in seconds.")

    def get_client(self, recorder: CallRecorder | None = None) -> ThingSpaceClient:
        """Build a `ThingSpaceClient`; the secrets are unwrapped there and nowhere else."""
        return ThingSpaceClient(
            self.base_url,
            app_key=self.app_key,
            app_secret=self.app_secret,
            username=self.username,
            password=self.password,
            account_name=self.account_name,
            timeout=self.timeout_seconds,
            recorder=recorder,
        )
