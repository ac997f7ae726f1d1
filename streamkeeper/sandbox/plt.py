"""The Plantronics (PLT) partner Streams API emulator, publishing its events into a `PubNubEmulator`.

State: partners (by ``partner_id``) -> tenants -> streams; each stream belongs to one tenant, has a
subscribe key (the partner's) and channels named ``<partnerId>_sub<N>``, and is started or stopped.

Routes (see `streamkeeper.vendors.plt` for what is documented and what is ours):

- ``GET /v1/realtime/streams``: the partner's streams, one item per tenant and stream;
- ``GET /v1/realtime/streams/{streamId}``: a stream's metadata;
- ``POST /v1/realtime/streams/{streamId}/start`` and ``/stop`` with ``{"tenantId": ...}`` (ours);
- ``POST /_sandbox/emit`` with ``{"streamId", "tenantId", "count"}``: generate events (not PLT's API).

`PLTSandbox.emit` publishes realistic PLT events (shapes from the vendor's documentation) for started
streams; tests add partners, tenants and streams with `add_partner`, `add_tenant` and `add_stream`.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from streamkeeper.sandbox.base import VendorSandbox
from streamkeeper.sandbox.pubnub import PubNubEmulator

PARTNER_HEADER = "partner_id"
DEFAULT_PARTNER_ID = "e69130ce-64db-4d9d-805e-e3738bde4dd5"  # the seed's example partner
DEFAULT_SUB_KEY = "sub-c-cf5b662a-0da9-11e6-996b-0619f8945a4f"  # the seed's example subKey
DEFAULT_TENANT_ID = "dc560b50-9e20-41b9-a76b-d32ebfbdcd7a"  # the seed's example tenant
SECOND_TENANT_ID = "7b1f4c2e-5a0d-4e8b-9c36-2f8e1d4a6b90"  # ours

_NAMESPACE = uuid.UUID("5d0c4a1e-8f3b-4c59-a1e2-9b7d6c3f2a10")  # ours: for stable generated ids


@dataclass(frozen=True)
class StreamType:
    """A kind of PLT stream and the events it carries."""

    name: str
    type_id: str
    event_types: tuple[str, ...]


# QUICKDISCONNECT and its typeId are the seed's; the other stream names are ours (the docs name events,
# not the streams that carry them).
STREAM_TYPES: dict[str, StreamType] = {
    t.name: t
    for t in (
        StreamType("QUICKDISCONNECT", "3e39258f-c888-4cfa-a6d1-63f4ccb77ac7", ("isConnected",)),
        StreamType(
            "HEADSET_EVENTS",
            str(uuid.uuid5(_NAMESPACE, "HEADSET_EVENTS")),
            ("isMute", "HEADSET_BUTTON_TALK", "HEADSET_BUTTON_REJECT"),
        ),
        StreamType("CALL_EVENTS", str(uuid.uuid5(_NAMESPACE, "CALL_EVENTS")), ("CALL_EVENT",)),
        StreamType(
            "DEVICE_EVENTS",
            str(uuid.uuid5(_NAMESPACE, "DEVICE_EVENTS")),
            ("USB_CONNECT", "USB_DISCONNECT", "isConnected"),
        ),
    )
}
ALL_EVENT_TYPES = tuple(dict.fromkeys(e for t in STREAM_TYPES.values() for e in t.event_types))


@dataclass
class Stream:
    """One stream of one tenant."""

    stream_id: str
    subscription_id: str
    stream_type: StreamType
    tenant_id: str
    sub_key: str
    sub_channels: list[str]
    started: bool = False


@dataclass
class Tenant:
    tenant_id: str
    name: str


@dataclass
class Partner:
    partner_id: str
    name: str
    sub_key: str
    tenants: dict[str, Tenant] = field(default_factory=dict)
    streams: dict[str, Stream] = field(default_factory=dict)
    next_channel: int = 1


class PLTSandbox(VendorSandbox):
    """The PLT emulator.

    Args:
        pubnub: where the events of started streams are published (needed by `emit` only).
        seed: random seed of the event generator, for repeatable events.
    """

    name: ClassVar[str] = "plt"

    def __init__(self, pubnub: PubNubEmulator | None = None, *, seed: int | None = None) -> None:
        self.pubnub = pubnub
        self._lock = threading.Lock()  # state is read by `emit` on test threads
        self._rng = random.Random(seed)
        self.partners: dict[str, Partner] = {}
        # ours: fields added to every stream item and metadata answer, to test how clients cope with a
        # vendor that adds (or breaks) fields
        self.extra_fields: dict[str, Any] = {}
        super().__init__()

    # -- state ---------------------------------------------------------------------------------------------
    def reset_state(self) -> None:
        """Forget everything, then seed the default partner: two tenants, four streams (ours)."""
        with self._lock:
            self.partners = {}
        self.add_partner(DEFAULT_PARTNER_ID, "Sandbox Partner", sub_key=DEFAULT_SUB_KEY)
        self.add_tenant(DEFAULT_PARTNER_ID, DEFAULT_TENANT_ID, "Contoso Contact Center")
        self.add_tenant(DEFAULT_PARTNER_ID, SECOND_TENANT_ID, "Fabrikam Support Desk")
        for tenant_id, stream_name, channels in (
            (DEFAULT_TENANT_ID, "QUICKDISCONNECT", 2),
            (DEFAULT_TENANT_ID, "HEADSET_EVENTS", 1),
            (SECOND_TENANT_ID, "QUICKDISCONNECT", 1),
            (SECOND_TENANT_ID, "CALL_EVENTS", 1),
        ):
            self.add_stream(
                DEFAULT_PARTNER_ID,
                tenant_id,
                stream_name,
                channels=channels,
                stream_id=str(uuid.uuid5(_NAMESPACE, f"{tenant_id}/{stream_name}")),
            )

    def add_partner(
        self, partner_id: str | None = None, name: str = "Partner", *, sub_key: str | None = None
    ) -> Partner:
        """Register a partner (a fresh id when none is given) and return it."""
        partner = Partner(
            partner_id=partner_id or str(uuid.uuid4()),
            name=name,
            sub_key=sub_key or f"sub-c-{uuid.uuid4()}",
        )
        with self._lock:
            self.partners[partner.partner_id] = partner
        return partner

    def add_tenant(self, partner_id: str, tenant_id: str | None = None, name: str = "Tenant") -> Tenant:
        """Give a partner access to a tenant and return it."""
        tenant = Tenant(tenant_id or str(uuid.uuid4()), name)
        with self._lock:
            self.partners[partner_id].tenants[tenant.tenant_id] = tenant
        return tenant

    def add_stream(
        self,
        partner_id: str,
        tenant_id: str,
        stream_name: str = "QUICKDISCONNECT",
        *,
        channels: int = 1,
        stream_id: str | None = None,
        started: bool = False,
    ) -> Stream:
        """Make a stream available to a partner for one tenant, with `channels` PubNub channels."""
        with self._lock:
            partner = self.partners[partner_id]
            if tenant_id not in partner.tenants:
                raise KeyError(f"tenant {tenant_id} is not one of partner {partner.name}'s")
            stream_type = STREAM_TYPES.get(stream_name) or StreamType(
                stream_name, str(uuid.uuid5(_NAMESPACE, stream_name)), ALL_EVENT_TYPES
            )
            names = [f"{partner.partner_id}_sub{partner.next_channel + i}" for i in range(channels)]
            partner.next_channel += channels
            stream_id = stream_id or str(uuid.uuid4())
            stream = Stream(
                stream_id=stream_id,
                subscription_id=str(uuid.uuid5(_NAMESPACE, f"subscription/{stream_id}")),
                stream_type=stream_type,
                tenant_id=tenant_id,
                sub_key=partner.sub_key,
                sub_channels=names,
                started=started,
            )
            partner.streams[stream.stream_id] = stream
        return stream

    def find_stream(self, stream_id: str) -> Stream:
        """A stream by id, whoever its partner (KeyError when unknown)."""
        with self._lock:
            for partner in self.partners.values():
                if stream_id in partner.streams:
                    return partner.streams[stream_id]
        raise KeyError(stream_id)

    # -- events --------------------------------------------------------------------------------------------
    def emit(self, stream_id: str, tenant_id: str, count: int = 1) -> list[int]:
        """Publish `count` events of a started stream into its channels (round robin); callable from any thread.

        Returns:
            The timetokens of the published events, in order; empty when the stream is not started for
            that tenant (PLT sends nothing then).

        Raises:
            KeyError: no such stream for that tenant.
            RuntimeError: the sandbox has no PubNub emulator.
        """
        if self.pubnub is None:
            raise RuntimeError("this PLT sandbox has no PubNub emulator to publish into")
        stream = self.find_stream(stream_id)
        if stream.tenant_id != tenant_id:
            raise KeyError(f"no stream {stream_id} for tenant {tenant_id}")
        with self._lock:
            if not stream.started:
                return []
            events = [self._event(stream) for _ in range(count)]
        channels = stream.sub_channels
        return [self.pubnub.publish(channels[i % len(channels)], event) for i, event in enumerate(events)]

    def _event(self, stream: Stream) -> dict[str, Any]:
        """One PLT event: ``eventType``, ``product``, ``timeStamp``, ``tenantId``, string booleans (doc)."""
        rng = self._rng
        event_type = rng.choice(stream.stream_type.event_types)
        event: dict[str, Any] = {
            "eventType": event_type,
            "product": {"headset": _serial(rng), "baseId": _serial(rng)},
            "timeStamp": self.clock.now_utc().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "tenantId": stream.tenant_id,
        }
        flag = rng.choice(("true", "false"))
        if event_type == "isConnected":
            # a quick disconnect is an isConnected "false" (doc); mostly those on that stream
            event["isConnected"] = "false" if stream.stream_type.name == "QUICKDISCONNECT" else flag
        elif event_type == "isMute":
            event["isMute"] = flag
        elif event_type in ("HEADSET_BUTTON_TALK", "HEADSET_BUTTON_REJECT"):
            event["buttonPressed"] = "true"  # ours
        elif event_type == "CALL_EVENT":
            event["callId"] = str(uuid.UUID(int=rng.getrandbits(128)))  # ours
            event["callState"] = rng.choice(("CallStarted", "CallAnswered", "CallEnded"))  # ours
        elif event_type in ("USB_CONNECT", "USB_DISCONNECT"):
            event["isConnected"] = "true" if event_type == "USB_CONNECT" else "false"  # ours
        return event

    # -- HTTP ----------------------------------------------------------------------------------------------
    def error_body(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        """PLT's error shape (ours): ``{"error": "<code>", "message": "<text>"}``."""
        return json.dumps({"error": code, "message": message}).encode(), "application/json"

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/realtime/streams", self._list, methods=["GET"]),
            Route("/v1/realtime/streams/{stream_id}", self._get, methods=["GET"]),
            Route("/v1/realtime/streams/{stream_id}/start", self._start, methods=["POST"]),  # ours
            Route("/v1/realtime/streams/{stream_id}/stop", self._stop, methods=["POST"]),  # ours
            Route("/_sandbox/emit", self._emit, methods=["POST"]),  # ours: not PLT's API
        ]

    def _partner(self, request: Request) -> Partner | Response:
        partner_id = request.headers.get(PARTNER_HEADER)
        if not partner_id:
            # ours: the docs only say every call carries the header
            return self.error(401, "unauthorized", "the partner_id header is required")
        with self._lock:
            partner = self.partners.get(partner_id)
        if partner is None:
            # ours; the message never echoes the id
            return self.error(403, "forbidden", "unknown partner_id")
        return partner

    def _stream(self, partner: Partner, request: Request) -> Stream | Response:
        stream_id = request.path_params["stream_id"]
        stream = partner.streams.get(stream_id)
        if stream is None:
            return self.error(404, "not_found", f"no stream {stream_id}")
        return stream

    async def _list(self, request: Request) -> Response:
        partner = self._partner(request)
        if isinstance(partner, Response):
            return partner
        with self._lock:
            items = [
                {
                    "subscriptionId": s.subscription_id,
                    "tenantId": s.tenant_id,
                    "tenantName": partner.tenants[s.tenant_id].name,
                    "streamId": s.stream_id,
                    "streamName": s.stream_type.name,
                    "started": s.started,  # ours
                    **self.extra_fields,
                }
                for s in partner.streams.values()
            ]
        return JSONResponse(items)

    async def _get(self, request: Request) -> Response:
        partner = self._partner(request)
        if isinstance(partner, Response):
            return partner
        stream = self._stream(partner, request)
        if isinstance(stream, Response):
            return stream
        return JSONResponse(
            {
                "typeId": stream.stream_type.type_id,
                "streamName": stream.stream_type.name,
                "notificationType": "pubnub",
                "pubKey": None,
                "subKey": stream.sub_key,
                "pubChannel": None,
                "subChannel": list(stream.sub_channels),
                "isPublishOnly": False,
                "isSubscribeOnly": False,
                "partnerId": partner.partner_id,
                "tenantId": stream.tenant_id,
                **self.extra_fields,
            }
        )

    async def _start(self, request: Request) -> Response:
        return await self._control(request, started=True)

    async def _stop(self, request: Request) -> Response:
        return await self._control(request, started=False)

    async def _control(self, request: Request, *, started: bool) -> Response:
        partner = self._partner(request)
        if isinstance(partner, Response):
            return partner
        stream = self._stream(partner, request)
        if isinstance(stream, Response):
            return stream
        try:
            body = await request.json()
        except ValueError:
            body = None
        tenant_id = body.get("tenantId") if isinstance(body, dict) else None
        if not isinstance(tenant_id, str) or not tenant_id:
            return self.error(400, "bad_request", "tenantId is required")  # ours
        if tenant_id != stream.tenant_id:
            # ours: a stream is available to one tenant
            return self.error(404, "not_found", f"no stream {stream.stream_id} for tenant {tenant_id}")
        with self._lock:
            stream.started = started  # ours: idempotent, 200 either way
        return JSONResponse({"streamId": stream.stream_id, "tenantId": tenant_id, "started": started})

    async def _emit(self, request: Request) -> Response:
        try:
            body = await request.json()
            stream_id, tenant_id = str(body["streamId"]), str(body["tenantId"])
            count = int(body.get("count", 1))
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'expected {"streamId", "tenantId", "count"}'}, status_code=400)
        try:
            timetokens = self.emit(stream_id, tenant_id, count)
        except KeyError:
            return JSONResponse({"error": f"no stream {stream_id}"}, status_code=404)
        except RuntimeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse({"timetokens": [str(tt) for tt in timetokens]})


def _serial(rng: random.Random) -> str:
    """A device serial like the docs' ``0BG8UK``."""
    return "0" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(5))


__all__ = ["DEFAULT_PARTNER_ID", "DEFAULT_TENANT_ID", "STREAM_TYPES", "PLTSandbox"]
