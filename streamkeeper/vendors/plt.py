"""Plantronics (PLT) partner Streams API: which event streams a partner may use, and start/stop per tenant.

Every call carries the partner's id in a ``partner_id`` header (the only credential; treated as a secret).
The events themselves arrive on PubNub: subscribe with the stream's `subKey` to every channel of its
`subChannel` list (see `streamkeeper.sandbox.pubnub` for the local stand-in).

Documented (seed): the two reads, the metadata fields, the ``partner_id`` header, 200 on start.
Ours (the published copies lost them): the JSON shape of the stream list, the start/stop paths and
body, the ``started`` flag in list items, the error body ``{"error", "message"}``.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

from streamkeeper.vendors.http import HeaderAuth, RequestModel, VendorClient, VendorModel, build_request

DEFAULT_BASE_URL = "http://localhost:8090"
PARTNER_HEADER = "partner_id"


class PLTModel(VendorModel):
    """A PLT answer: camelCase JSON, snake_case attributes, unknown fields kept."""

    model_config = ConfigDict(alias_generator=to_camel)


class StreamSummary(PLTModel):
    """One stream available to the partner for one tenant (an item of ``GET /v1/realtime/streams``).

    The fields are the ones the seed lists; their JSON names are ours.
    """

    subscription_id: str
    tenant_id: str
    tenant_name: str
    stream_id: str
    stream_name: str
    started: bool = False  # ours: whether ingestion is started for this tenant


class StreamMetadata(PLTModel):
    """What a partner needs to listen to a stream (``GET /v1/realtime/streams/{streamId}``, seed verbatim).

    `partner_id` is the partner's credential echoed back, so it is kept as a secret.
    """

    type_id: str
    stream_name: str
    notification_type: str = "pubnub"
    pub_key: str | None = None
    sub_key: str
    pub_channel: str | None = None
    sub_channel: list[str] = Field(default_factory=list)
    is_publish_only: bool = False
    is_subscribe_only: bool = False
    partner_id: SecretStr | None = None
    tenant_id: str


class StreamState(PLTModel):
    """The answer to a start or stop (ours: the seed only says 200)."""

    stream_id: str
    tenant_id: str
    started: bool


class StreamControl(RequestModel):
    """Body of a start or stop (ours)."""

    model_config = ConfigDict(alias_generator=to_camel)

    tenant_id: str = Field(min_length=1)


class PLTClient(VendorClient):
    """Client of the PLT partner Streams API.

    Args:
        base_url: the API root (the seed's sandbox: ``http://localhost:8090``).
        partner_id: the partner's id, sent in the ``partner_id`` header of every call.
        **options: keyword arguments of `VendorClient` (``verify``, ``timeout``, ``retry``, ``recorder``,
            ``transport``, ...).
    """

    vendor = "plt"

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, partner_id: SecretStr, **options: Any) -> None:
        super().__init__(base_url, auth=HeaderAuth(PARTNER_HEADER, partner_id), **options)

    def list_streams(self) -> list[StreamSummary]:
        """Every stream available to the partner, one item per tenant and stream."""
        response = self.request("GET", "/v1/realtime/streams", operation="list_streams")
        return self.parse(response, list[StreamSummary], "list_streams")

    def get_stream(self, stream_id: str) -> StreamMetadata:
        """The metadata needed to subscribe to a stream's events on PubNub.

        Raises:
            NotFound: no such stream for this partner.
        """
        response = self.request(
            "GET",
            "/v1/realtime/streams/{streamId}",
            operation="get_stream",
            path_params={"streamId": stream_id},
        )
        return self.parse(response, StreamMetadata, "get_stream")

    def start_stream(self, stream_id: str, tenant_id: str) -> StreamState:
        """Ask PLT to start ingesting a stream for a tenant; starting a started stream is a no-op."""
        return self._control("start_stream", "/v1/realtime/streams/{streamId}/start", stream_id, tenant_id)

    def stop_stream(self, stream_id: str, tenant_id: str) -> StreamState:
        """Ask PLT to stop a stream for a tenant; stopping a stopped stream is a no-op."""
        return self._control("stop_stream", "/v1/realtime/streams/{streamId}/stop", stream_id, tenant_id)

    def _control(self, operation: str, path: str, stream_id: str, tenant_id: str) -> StreamState:
        body = build_request(self.vendor, operation, StreamControl, {"tenantId": tenant_id})
        response = self.request(
            "POST",
            path,  # ours: the published copies of the seed cut these paths
            operation=operation,
            path_params={"streamId": stream_id},
            json=body.model_dump(by_alias=True),
            # start and stop set a state (ours: repeating one answers 200 and changes nothing), so a
            # lost answer or a 5xx may be retried like a PUT.
            idempotent=True,
        )
        return self.parse(response, StreamState, operation)

    def error_details(self, response: httpx.Response) -> tuple[str | None, str | None]:
        """PLT's error body (ours): ``{"error": "<code>", "message": "<text>"}``."""
        try:
            body = response.json()
        except ValueError:
            return super().error_details(response)
        if not isinstance(body, dict):
            return None, None
        code, message = body.get("error"), body.get("message")
        return (str(code) if code else None), (str(message) if message else None)


__all__ = [
    "DEFAULT_BASE_URL",
    "PLTClient",
    "StreamControl",
    "StreamMetadata",
    "StreamState",
    "StreamSummary",
]
