"""Emulator of a Polycom RealPresence DMA's subscription API (HTTPS, Basic auth, JSON and XML).

What it enforces (seed 001_40a90556fadd19e5.txt unless marked):
- roles: Administrator or Provisioner see and manage every subscription, other users only their own (403);
- conditional GET with ``If-None-Match`` on the list and on one subscription (304);
- PUT needs the ETag in the body's ``entity-tag`` or in ``If-Match`` (428 when neither); time-to-live is the
  only updatable field; a PUT restarts the timer;
- time-to-live 0 means the maximum (26 h), 1..93600 is accepted, anything else is 409; the later docs'
  clamping instead is the setting ``ttl_out_of_range="clamp"``;
- subscriptions expire at their calculated expiration date and are then gone (404);
- create on ``conferences``, ``conferences/{id}``, ``conferences/{id}/participants`` returns ``Location``
  (201 is ours); the DMA first validates the consumer URL with a GET (doc) unless
  ``validate_consumer_url=False``;
- notifications are POSTed to the consumer URL with the subscription's credentials and a
  ``sequence-number`` 1, 2, 3...; ``send-update-notification-now`` restarts it at 1;
- representations ``application/vnd.plcm.plcm-subscription[-v2]+json|+xml`` and
  ``...plcm-subscription-list[-v2]+json|+xml``, negotiated: a body is read as its ``Content-Type`` says (415
  for another, ours) and answered as ``Accept`` asks (406 for a type it cannot give, ours; none, ``*/*``,
  ``application/json``: v1 JSON). Version 2 carries the subscription parameters
  (``plcm-subscription-parameter-list``, doc), version 1 does not.

The wire format is encoded here, on its own (not with the client's codec), so that a mistake in one side's
reading of the representation cannot hide in both.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import xml.etree.ElementTree as ET
from base64 import b64decode
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from streamkeeper.sandbox.base import VendorSandbox, outbound_tls

BASE = "/api/rest"
ADMIN_ROLES = frozenset({"Administrator", "Provisioner"})
MAX_TIME_TO_LIVE = 93600  # seed: 26 hours
PLCM_TYPE = re.compile(r"^application/vnd\.plcm\.plcm-(?P<kind>[a-z-]+?)(?P<v2>-v2)?\+(?P<fmt>json|xml)$")
NAMESPACE = "urn:com:polycom:api:rest:plcm-{element}"  # ours
PARAMETERS = "plcm-subscription-parameter-list"  # doc: in the v2 representation
PARAMETER = "plcm-subscription-parameter"  # ours: {name, value}
NUMBERS = frozenset({"time-to-live", "status-code"})
FLAGS = frozenset({"send-update-notifications"})


class Unacceptable(Exception):
    """A request whose media type the DMA does not take (415) or cannot answer in (406)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Media:
    """One plcm representation: ``subscription``, ``subscription-list`` or ``error``; version; format."""

    kind: str
    version: int = 1
    fmt: str = "json"

    @property
    def element(self) -> str:
        return f"plcm-{self.kind}" + ("-v2" if self.version == 2 else "")

    @property
    def content_type(self) -> str:
        return f"application/vnd.plcm.{self.element}+{self.fmt}"

    def __call__(self, kind: str) -> Media:
        """The same version and format for another kind (a list's items, an error)."""
        return Media(kind, self.version if kind != "error" else 1, self.fmt)


def _media_types(header: str) -> list[str]:
    """The types of an ``Accept`` header, highest q first (stable)."""
    ranked = []
    for index, part in enumerate(header.split(",")):
        kind, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if kind and q > 0:
            ranked.append((-q, index, kind.lower()))
    return [kind for _, _, kind in sorted(ranked)]


def negotiate(accept: str | None, kind: str) -> Media:
    """The representation of `kind` to answer in, from the ``Accept`` header.

    Raises:
        Unacceptable: 406, nothing it asks for can be given.
    """
    if not accept:
        return Media(kind)
    for wanted in _media_types(accept):
        match = PLCM_TYPE.match(wanted)
        if match and match["kind"] == kind:
            return Media(kind, 2 if match["v2"] else 1, match["fmt"])
        if wanted in ("*/*", "application/*", "application/json"):
            return Media(kind)
        if wanted == "application/xml":
            return Media(kind, 1, "xml")
    raise Unacceptable(406, f"cannot answer {kind} as {accept}")


def _error_format(accept: str | None) -> str:
    return "xml" if accept and "xml" in accept else "json"  # plcm-error has no v2


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _hyphen(name: str) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in name)


def encode(fields: dict[str, Any], media: Media) -> bytes:
    """One object (hyphenated field names; ``parameters`` a dict, kept only in version 2) on the wire."""
    present = {k: v for k, v in fields.items() if v is not None and k != "parameters"}
    parameters = fields.get("parameters") if media.version == 2 else None
    if media.fmt == "json":
        body: dict[str, Any] = {_camel(k): v for k, v in present.items()}
        if parameters is not None:
            body[_camel(PARAMETERS)] = {
                _camel(PARAMETER): [{"name": n, "value": v} for n, v in parameters.items()]
            }
        return json.dumps(body).encode()
    return ET.tostring(_element(present, parameters, media), encoding="utf-8", xml_declaration=True)


def _element(present: dict[str, Any], parameters: dict[str, str] | None, media: Media) -> ET.Element:
    root = ET.Element(media.element, xmlns=NAMESPACE.format(element=media.element[5:]))
    for key, value in present.items():
        ET.SubElement(root, key).text = (
            ("true" if value else "false") if isinstance(value, bool) else str(value)
        )
    if parameters is not None:
        listing = ET.SubElement(root, PARAMETERS)
        for name, value in parameters.items():
            entry = ET.SubElement(listing, PARAMETER)
            ET.SubElement(entry, "name").text = name
            ET.SubElement(entry, "value").text = value
    return root


def encode_list(items: list[dict[str, Any]], media: Media) -> bytes:
    """A subscription list on the wire: JSON ``{"plcmSubscription[V2]": [...]}`` (ours), XML a list element."""
    item = media("subscription")
    if media.fmt == "json":
        key = "plcmSubscriptionV2" if media.version == 2 else "plcmSubscription"  # ours: the list's wrapper
        return json.dumps({key: [json.loads(encode(i, item)) for i in items]}).encode()
    root = ET.Element(media.element, xmlns=NAMESPACE.format(element=media.element[5:]))
    for fields in items:
        present = {k: v for k, v in fields.items() if v is not None and k != "parameters"}
        root.append(_element(present, fields.get("parameters") if media.version == 2 else None, item))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def decode(raw: bytes, content_type: str | None) -> tuple[dict[str, Any], Media]:
    """A subscription body as hyphenated fields (``parameters`` a dict), read as its Content-Type says.

    Raises:
        Unacceptable: 415, not a plcm-subscription type (or plain JSON/XML).
        ValueError: the body does not parse, or is not one object.
    """
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    match = PLCM_TYPE.match(ctype)
    if match and match["kind"] == "subscription":
        media = Media("subscription", 2 if match["v2"] else 1, match["fmt"])
    elif ctype in ("application/json", "application/xml"):
        media = Media("subscription", 1, ctype.rsplit("/", 1)[-1])
    else:
        raise Unacceptable(415, f"Content-Type {ctype} is not a plcm-subscription representation")
    if media.fmt == "xml":
        root = ET.fromstring(raw)
        out: dict[str, Any] = {}
        for child in root:
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == PARAMETERS:
                pairs = [{e.tag.rsplit("}", 1)[-1]: (e.text or "") for e in entry} for entry in child]
                out["parameters"] = {p.get("name", ""): p.get("value", "") for p in pairs}
                continue
            text = (child.text or "").strip()
            out[tag] = (
                int(text)
                if tag in NUMBERS and text.lstrip("-").isdigit()
                else (text.lower() == "true" if tag in FLAGS else text)
            )
        return out, media
    parsed = json.loads(raw or b"{}")
    if not isinstance(parsed, dict):
        raise ValueError("body is not an object")
    fields = {_hyphen(k): v for k, v in parsed.items()}
    listing = fields.pop(PARAMETERS, None)
    if listing is not None:
        entries = listing.get(_camel(PARAMETER), []) if isinstance(listing, dict) else listing
        fields["parameters"] = {
            str(e.get("name")): str(e.get("value")) for e in entries if isinstance(e, dict)
        }
    return fields, media


@dataclass
class _Subscription:
    id: str
    owner: str
    subject: str
    consumer_url: str
    time_to_live: int
    expires_at: float
    username: str | None = None
    password: str | None = None
    send_update_notifications: bool | None = None
    passback: str | None = None
    passthru: str | None = None
    parameters: dict[str, str] | None = None  # the v2 representation's subscription parameters
    version: int = 0
    next_sequence: int = 1

    @property
    def etag(self) -> str:
        raw = f"{self.id}:{self.version}:{self.time_to_live}:{self.expires_at:.3f}"
        return '"' + hashlib.sha1(raw.encode()).hexdigest()[:16] + '"'


@dataclass
class Delivery:
    """One notification the emulator sent (for tests)."""

    subscription_id: str
    sequence_number: int
    status: int | None
    body: dict[str, Any] = field(default_factory=dict)


class DMASandbox(VendorSandbox):
    """The DMA emulator.

    Args:
        users: user name -> (password, roles). Defaults: ``admin`` (Administrator), ``provisioner``
            (Provisioner), ``operator`` (no role); passwords are the user name + ``-pass``.
        ttl_out_of_range: ``reject`` (409, the seed) or ``clamp`` (the later docs).
        validate_consumer_url: GET the consumer URL before accepting a subscription.
    """

    name = "dma"
    read_only = (r"/send-update-notification-now$",)

    def __init__(
        self,
        users: dict[str, tuple[str, set[str]]] | None = None,
        ttl_out_of_range: Literal["reject", "clamp"] = "reject",
        validate_consumer_url: bool = True,
    ) -> None:
        self.users = users or {
            "admin": ("admin-pass", {"Administrator"}),
            "provisioner": ("provisioner-pass", {"Provisioner"}),
            "operator": ("operator-pass", set()),
        }
        self.ttl_out_of_range = ttl_out_of_range
        self.validate_consumer_url = validate_consumer_url
        super().__init__()

    def reset_state(self) -> None:
        self.subscriptions: dict[str, _Subscription] = {}
        self.conferences: dict[str, dict[str, Any]] = {
            str(i): {"id": str(i), "name": f"Conference {i}", "participants": []} for i in range(1, 4)
        }
        self.deliveries: list[Delivery] = []
        self._ids = itertools.count(1)

    def _purge(self) -> None:
        now = self.now()
        for sub_id in [s.id for s in self.subscriptions.values() if s.expires_at <= now]:
            del self.subscriptions[sub_id]

    # -- representation ------------------------------------------------------------------------------------
    def error_body(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        body = {
            "statusCode": status,
            "description": message,
            "technicalDetails": None,
            "detailedErrorCode": code,
            "localizationKey": code,
            "localizationParam": [],
        }
        return json.dumps(body).encode(), "application/vnd.plcm.plcm-error+json"

    def _error(self, request: Request, status: int, code: str, message: str) -> Response:
        fields = {
            "status-code": status,
            "description": message,
            "detailed-error-code": code,
            "localization-key": code,
        }
        media = Media("error", 1, _error_format(request.headers.get("accept")))
        return Response(encode(fields, media), status, media_type=media.content_type)

    def _fields(self, sub: _Subscription, request: Request) -> dict[str, Any]:
        return {
            "subscription-identifier": sub.id,
            "subject-resource-url": f"{self._base(request)}/{sub.subject}",
            "consumer-url": sub.consumer_url,
            "time-to-live": sub.time_to_live,
            "username": sub.username,
            "send-update-notifications": sub.send_update_notifications,
            "passback": sub.passback,
            "passthru": sub.passthru,
            "entity-tag": sub.etag,
            "calculated-expiration-date": datetime.fromtimestamp(sub.expires_at, UTC).isoformat(),
            "parameters": sub.parameters or {},
        }

    def _base(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{BASE}"

    def _render(self, request: Request, sub: _Subscription) -> Response:
        try:
            media = negotiate(request.headers.get("accept"), "subscription")
        except Unacceptable as exc:
            return self._error(request, exc.status, "not.acceptable", str(exc))
        return Response(
            encode(self._fields(sub, request), media),
            200,
            media_type=media.content_type,
            headers={"ETag": sub.etag},
        )

    async def _body(self, request: Request) -> dict[str, Any]:
        """The subscription body as hyphenated fields (raises `Unacceptable` or ValueError)."""
        fields, _ = decode(await request.body(), request.headers.get("content-type"))
        return fields

    # -- auth ----------------------------------------------------------------------------------------------
    def _user(self, request: Request) -> tuple[str, set[str]] | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = b64decode(header[6:]).decode().partition(":")
        except Exception:
            return None
        known = self.users.get(user)
        if known is None or known[0] != password:
            return None
        return user, known[1]

    def _unauthorized(self, request: Request) -> Response:
        response = self._error(request, 401, "unauthorized", "Authentication required")
        response.headers["WWW-Authenticate"] = 'Basic realm="DMA"'
        return response

    def _may(self, user: tuple[str, set[str]], sub: _Subscription) -> bool:
        return bool(user[1] & ADMIN_ROLES) or sub.owner == user[0]

    def _lookup(self, request: Request) -> tuple[tuple[str, set[str]] | None, _Subscription | Response]:
        user = self._user(request)
        if user is None:
            return None, self._unauthorized(request)
        self._purge()
        sub = self.subscriptions.get(request.path_params["id"])
        if sub is None:
            return user, self._error(request, 404, "subscription.not.found", "No such subscription")
        if not self._may(user, sub):
            return user, self._error(
                request,
                403,
                "permission.denied",
                "Permission denied. The user must be the subscription creator or have Administrator or "
                "Provisioner roles.",
            )
        return user, sub

    def _ttl(self, value: Any) -> int | None:
        """The effective time-to-live, or None when out of range under the reject rule."""
        try:
            ttl = int(value)
        except (TypeError, ValueError):
            return None
        if ttl == 0:
            return MAX_TIME_TO_LIVE
        if 1 <= ttl <= MAX_TIME_TO_LIVE:
            return ttl
        if self.ttl_out_of_range == "clamp":
            return min(max(ttl, 1), MAX_TIME_TO_LIVE)
        return None

    # -- routes --------------------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [
            Route(f"{BASE}/subscriptions", self.list_subscriptions, methods=["GET"]),
            Route(f"{BASE}/subscriptions/{{id}}", self.get_subscription, methods=["GET"]),
            Route(f"{BASE}/subscriptions/{{id}}", self.update_subscription, methods=["PUT"]),
            Route(f"{BASE}/subscriptions/{{id}}", self.delete_subscription, methods=["DELETE"]),
            Route(
                f"{BASE}/subscriptions/{{id}}/send-update-notification-now", self.notify_now, methods=["POST"]
            ),
            Route(f"{BASE}/conferences", self.list_conferences, methods=["GET"]),  # ours: the subjects
            Route(f"{BASE}/conferences", self.create_subscription, methods=["POST"]),
            Route(f"{BASE}/conferences/{{conference}}", self.create_subscription, methods=["POST"]),
            Route(
                f"{BASE}/conferences/{{conference}}/participants", self.create_subscription, methods=["POST"]
            ),
        ]

    async def list_conferences(self, request: Request) -> Response:
        if self._user(request) is None:
            return self._unauthorized(request)
        return JSONResponse({"plcmConference": list(self.conferences.values())})

    async def list_subscriptions(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        self._purge()
        visible = sorted(
            (s for s in self.subscriptions.values() if self._may(user, s)), key=lambda s: int(s.id)
        )
        etag = '"' + hashlib.sha1("|".join(s.etag for s in visible).encode()).hexdigest()[:16] + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        try:
            media = negotiate(request.headers.get("accept"), "subscription-list")
        except Unacceptable as exc:
            return self._error(request, exc.status, "not.acceptable", str(exc))
        items = [self._fields(s, request) for s in visible]
        return Response(encode_list(items, media), 200, media_type=media.content_type, headers={"ETag": etag})

    async def get_subscription(self, request: Request) -> Response:
        _, found = self._lookup(request)
        if isinstance(found, Response):
            return found
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers={"ETag": found.etag})
        return self._render(request, found)

    async def update_subscription(self, request: Request) -> Response:
        _, found = self._lookup(request)
        if isinstance(found, Response):
            return found
        try:
            body = await self._body(request)
        except Unacceptable as exc:
            return self._error(request, exc.status, "unsupported.media.type", str(exc))
        except (ValueError, ET.ParseError):
            return Response("Bad request", 400, media_type="text/plain")
        etag = body.get("entity-tag") or request.headers.get("if-match")
        if not etag:
            return self._error(
                request, 428, "precondition.required", "The entity-tag is required in the body or If-Match"
            )
        if etag != found.etag:
            # ours: a stale ETag is 412, the usual answer to a failed precondition
            return self._error(request, 412, "precondition.failed", "The entity-tag does not match")
        for key, value in body.items():
            if key in ("time-to-live", "entity-tag", "subscription-identifier", "calculated-expiration-date"):
                continue
            if key == "parameters":  # a v2 body echoes them; they cannot change
                if value and value != (found.parameters or {}):
                    return Response("Bad request: parameters cannot be updated", 400, media_type="text/plain")
                continue
            current = self._fields(found, request).get(key)
            if value is not None and current is not None and str(value) != str(current):
                return Response(f"Bad request: {key} cannot be updated", 400, media_type="text/plain")
        ttl = self._ttl(body.get("time-to-live", found.time_to_live))
        if ttl is None:
            return self._error(
                request,
                409,
                "time-to-live.out.of.range",
                'time-to-live is out of range. Correct values are "0" (the maximum, 26 hours), or any integer '
                "between 1 and 93600 (26 hours) in seconds.",
            )
        found.time_to_live = ttl
        found.expires_at = self.now() + ttl
        found.version += 1
        return Response(status_code=204, headers={"ETag": found.etag})  # ours: the new ETag on the 204

    async def delete_subscription(self, request: Request) -> Response:
        _, found = self._lookup(request)
        if isinstance(found, Response):
            return found
        del self.subscriptions[found.id]
        return Response(status_code=204)

    async def notify_now(self, request: Request) -> Response:
        _, found = self._lookup(request)
        if isinstance(found, Response):
            return found
        found.next_sequence = 1
        asyncio.get_running_loop().create_task(self._notify(found, "UPDATE", self._base(request)))
        return Response(status_code=204)

    async def create_subscription(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        conference = request.path_params.get("conference")
        if conference is not None and conference not in self.conferences:
            return self._error(request, 404, "conference.not.found", f"No such conference {conference}")
        subject = "conferences" if conference is None else f"conferences/{conference}"
        if request.url.path.endswith("/participants"):
            subject += "/participants"
        try:
            body = await self._body(request)
        except Unacceptable as exc:
            return self._error(request, exc.status, "unsupported.media.type", str(exc))
        except (ValueError, ET.ParseError):
            return Response("Bad request: body is not a plcm-subscription", 400, media_type="text/plain")
        consumer = body.get("consumer-url")
        if not consumer or "time-to-live" not in body:
            return Response(
                "Bad request: consumer-url and time-to-live are required", 400, media_type="text/plain"
            )
        ttl = self._ttl(body["time-to-live"])
        if ttl is None:
            return self._error(request, 409, "time-to-live.out.of.range", "time-to-live is out of range")
        if self.validate_consumer_url and not await self._validate(consumer):
            return Response(
                f"Bad request: consumer-url {consumer} did not answer 200 to GET",
                400,
                media_type="text/plain",
            )
        sub = _Subscription(
            id=str(next(self._ids)),
            owner=user[0],
            subject=subject,
            consumer_url=consumer,
            time_to_live=ttl,
            expires_at=self.now() + ttl,
            username=body.get("username"),
            password=body.get("password"),
            send_update_notifications=body.get("send-update-notifications"),
            passback=body.get("passback"),
            passthru=body.get("passthru"),
            parameters=body.get("parameters") or None,
        )
        self.subscriptions[sub.id] = sub
        location = f"{self._base(request)}/subscriptions/{sub.id}"
        return Response(status_code=201, headers={"Location": location, "ETag": sub.etag})

    # -- notifications -------------------------------------------------------------------------------------
    async def _validate(self, url: str) -> bool:
        try:
            async with httpx.AsyncClient(timeout=5, verify=outbound_tls()) as client:
                return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    async def _notify(self, sub: _Subscription, kind: str, base: str) -> Delivery:
        seq = sub.next_sequence
        sub.next_sequence += 1
        conference_id = sub.subject.split("/")[1] if "/" in sub.subject else next(iter(self.conferences), "")
        body = {
            "notificationType": kind,
            "subscriptionUrl": f"{base}/subscriptions/{sub.id}",
            "resourceUrl": f"{base}/{sub.subject}",
            "sequenceNumber": seq,
            "passback": sub.passback,
            "conference": self.conferences.get(conference_id, {}),
        }
        auth = (sub.username, sub.password or "") if sub.username else None
        status: int | None
        try:
            async with httpx.AsyncClient(timeout=10, auth=auth, verify=outbound_tls()) as client:
                status = (await client.post(sub.consumer_url, json=body)).status_code
        except httpx.HTTPError:
            status = None
        delivery = Delivery(sub.id, seq, status, body)
        self.deliveries.append(delivery)
        return delivery

    async def _emit(self, conference_id: str, kind: str) -> list[Delivery]:
        self._purge()
        base = self.url + BASE
        targets = [
            s
            for s in self.subscriptions.values()
            if s.subject == "conferences" or s.subject.split("/")[1] == conference_id
        ]
        return list(await asyncio.gather(*(self._notify(s, kind, base) for s in targets)))

    def emit(self, conference_id: str = "1", kind: str = "UPDATE") -> list[Delivery]:
        """A conference changes: notify every subscription covering it (from any thread)."""
        if kind == "ADD" and conference_id not in self.conferences:
            self.conferences[conference_id] = {"id": conference_id, "name": f"Conference {conference_id}"}
        result: list[Delivery] = self.call_in_loop(self._emit(conference_id, kind))
        return result
