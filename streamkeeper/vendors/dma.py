"""Polycom RealPresence DMA REST API: subscriptions to conference events.

Sources: seed 001_40a90556fadd19e5.txt (the subscription resource) and the DMA API docs (VENDORS.md §2).
JSON and XML representations, version 1 or 2 (seed: ``application/vnd.plcm.plcm-subscription[-v2]+json|
+xml``, lists ``...plcm-subscription-list[-v2]+...``), chosen with `DMAClient`'s ``media_format`` and
``media_version`` and sent in ``Accept`` and ``Content-Type``. The JSON uses camelCase (``consumerUrl``),
the XML hyphenated names (``consumer-url``). Version 2 adds a ``plcm-subscription-parameter-list`` (doc: the
v2 schema; its entries' ``name``/``value`` shape is ours); the XML root of a version 2 body is
``plcm-subscription-v2`` (ours: the media type's name, as in version 1). HTTP Basic auth; usually a
self-signed certificate, trusted through a CA bundle, never by turning verification off.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

from streamkeeper.vendors.http import (
    MalformedResponse,
    NotFound,
    RequestModel,
    VendorClient,
    VendorModel,
    basic_auth,
    build_request,
)

MAX_TIME_TO_LIVE = 93600
"""26 hours: the longest a DMA subscription lives without a refresh. 0 asks for this maximum."""

MEDIA = "application/vnd.plcm.plcm-{kind}+{fmt}"
XML_NS = "urn:com:polycom:api:rest:plcm-{kind}"  # ours: the namespace pattern of the other plcm types
PARAMETERS = "plcm-subscription-parameter-list"  # doc: the v2 representation's extra element
PARAMETER = "plcm-subscription-parameter"  # ours: one entry, {name, value}

MediaFormat = Literal["json", "xml"]
MediaVersion = Literal["v1", "v2"]


def media_kind(kind: str, version: MediaVersion) -> str:
    """``subscription`` -> ``subscription-v2`` for version 2 (seed: the -v2 media types)."""
    return f"{kind}-v2" if version == "v2" and kind != "error" else kind


# Fields of plcm-subscription (XML element names); JSON uses the camelCase of each.
SUBSCRIPTION_FIELDS = (
    "subscription-identifier",
    "subject-resource-url",
    "consumer-url",
    "time-to-live",
    "username",
    "password",
    "send-update-notifications",
    "passback",
    "passthru",
    "entity-tag",
    "calculated-expiration-date",
)
_INT_FIELDS = {"time-to-live"}
_BOOL_FIELDS = {"send-update-notifications"}


def _alias(name: str) -> AliasChoices:
    return AliasChoices(to_camel(name), name.replace("_", "-"), name)


class Subscription(VendorModel):
    """A ``plcm-subscription`` as the DMA returns it (the password is never read back)."""

    subscription_identifier: str = Field(validation_alias=_alias("subscription_identifier"))
    subject_resource_url: str | None = Field(None, validation_alias=_alias("subject_resource_url"))
    consumer_url: str = Field(validation_alias=_alias("consumer_url"))
    time_to_live: int = Field(validation_alias=_alias("time_to_live"))
    username: str | None = None
    send_update_notifications: bool | None = Field(None, validation_alias=_alias("send_update_notifications"))
    passback: str | None = None
    passthru: str | None = None
    entity_tag: str | None = Field(None, validation_alias=_alias("entity_tag"))
    calculated_expiration_date: datetime | None = Field(
        None, validation_alias=_alias("calculated_expiration_date")
    )
    parameters: dict[str, str] | None = Field(None, validation_alias=_alias("parameters"))
    """The v2 representation's subscription parameters (None in version 1)."""


class NewSubscription(RequestModel):
    """The body of a create: what the DMA needs to notify a consumer.

    `username`/`password` are what the DMA uses to authenticate to the consumer (our receiver).
    """

    consumer_url: str = Field(min_length=1)
    time_to_live: int = Field(ge=0, le=MAX_TIME_TO_LIVE)
    username: str | None = None
    password: SecretStr | None = None
    send_update_notifications: bool | None = None
    passback: str | None = None
    passthru: str | None = None
    parameters: dict[str, str] | None = None
    """Subscription parameters: only the v2 representation carries them."""

    @field_validator("consumer_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value


class SubscriptionList(VendorModel):
    """The list answer, with the list's ETag for the next conditional GET."""

    subscriptions: list[Subscription]
    etag: str | None = None


NOT_MODIFIED = None
"""What a conditional read returns when the DMA answered 304."""


# -- representations ---------------------------------------------------------------------------------------
def _camel(name: str) -> str:
    return to_camel(name.replace("-", "_"))


def to_wire(fields: dict[str, Any], fmt: MediaFormat, kind: str = "subscription") -> bytes:
    """Serialise a subscription (keys in hyphenated form; ``parameters`` a dict) as JSON or XML of `kind`
    (``subscription``, ``subscription-v2``, ``error``)."""
    present = {k: v for k, v in fields.items() if v is not None}
    parameters = present.pop("parameters", None)
    if fmt == "json":
        import json

        body: dict[str, Any] = {_camel(k): v for k, v in present.items()}
        if parameters is not None:
            entries = [{"name": n, "value": v} for n, v in parameters.items()]
            body[_camel(PARAMETERS)] = {_camel(PARAMETER): entries}
        return json.dumps(body).encode()
    root = ET.Element(f"plcm-{kind}", xmlns=XML_NS.format(kind=kind))
    for key, value in present.items():
        ET.SubElement(root, key).text = str(value).lower() if isinstance(value, bool) else str(value)
    if parameters is not None:
        listing = ET.SubElement(root, PARAMETERS)
        for name, value in parameters.items():
            entry = ET.SubElement(listing, PARAMETER)
            ET.SubElement(entry, "name").text = name
            ET.SubElement(entry, "value").text = value
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_fields(element: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in element:
        tag = _local(child.tag)
        text = (child.text or "").strip()
        if tag == PARAMETERS:
            entries = [{_local(e.tag): (e.text or "").strip() for e in entry} for entry in child]
            out["parameters"] = {e.get("name", ""): e.get("value", "") for e in entries}
        elif tag in _INT_FIELDS:
            out[tag] = int(text) if text.lstrip("-").isdigit() else text
        elif tag in _BOOL_FIELDS:
            out[tag] = text.lower() == "true"
        else:
            out[tag] = text
    return out


def from_xml(body: bytes) -> Any:
    """Parse a plcm-subscription[-v2], plcm-subscription-list[-v2] or plcm-error XML body into dicts."""
    root = ET.fromstring(body)
    tag = _local(root.tag)
    if tag.endswith(("-list", "-list-v2")):
        return [_xml_fields(child) for child in root]
    return _xml_fields(root)


def _json_parameters(item: Any) -> Any:
    """A JSON subscription with its v2 parameter list as ``parameters: {name: value}``."""
    if not isinstance(item, dict) or _camel(PARAMETERS) not in item:
        return item
    listing = item.pop(_camel(PARAMETERS)) or {}
    entries = listing.get(_camel(PARAMETER), []) if isinstance(listing, dict) else listing
    item["parameters"] = {str(e.get("name")): str(e.get("value")) for e in entries if isinstance(e, dict)}
    return item


class DMAClient(VendorClient):
    """Client of a DMA's subscription API.

    Args:
        base_url: the REST root, e.g. ``https://dma:8443/api/rest``.
        username: DMA user (Provisioner or Administrator to see every subscription).
        password: DMA password.
        media_format: ``json`` or ``xml`` representations.
        media_version: ``v1`` (``plcm-subscription+...``) or ``v2`` (``plcm-subscription-v2+...``, with
            subscription parameters).
        **kwargs: passed to `VendorClient` (verify, timeout, transport, retry, recorder).
    """

    vendor = "dma"

    def __init__(
        self,
        base_url: str,
        *,
        username: str,
        password: SecretStr,
        media_format: MediaFormat = "json",
        media_version: MediaVersion = "v1",
        **kwargs: Any,
    ) -> None:
        super().__init__(base_url, auth=basic_auth(username, password), **kwargs)
        if media_format not in ("json", "xml"):
            raise ValueError(f"media_format must be json or xml, not {media_format!r}")
        if media_version not in ("v1", "v2"):
            raise ValueError(f"media_version must be v1 or v2, not {media_version!r}")
        self.media_format: MediaFormat = media_format
        self.media_version: MediaVersion = media_version

    def _media(self, kind: str) -> str:
        return MEDIA.format(kind=media_kind(kind, self.media_version), fmt=self.media_format)

    def _encode(self, fields: dict[str, Any]) -> bytes:
        return to_wire(fields, self.media_format, media_kind("subscription", self.media_version))

    def _decode(self, response: httpx.Response, operation: str) -> Any:
        if self.media_format == "json":
            body = self.json_body(response, operation)
            if isinstance(body, list):
                return [_json_parameters(item) for item in body]
            return _json_parameters(body)
        try:
            return from_xml(response.content)
        except ET.ParseError:
            raise MalformedResponse(
                self.vendor, operation, f"body is not valid XML ({len(response.content)} bytes)"
            ) from None

    def error_details(self, response: httpx.Response) -> tuple[str | None, str | None]:
        """plcm-error: ``status-code, description, technical-details, detailed-error-code, ...``."""
        ctype = response.headers.get("content-type", "")
        body: Any
        try:
            body = from_xml(response.content) if "xml" in ctype else response.json()
        except Exception:
            return super().error_details(response)
        if not isinstance(body, dict):
            return None, None

        def pick(name: str) -> Any:
            return body.get(name) or body.get(to_camel(name.replace("-", "_")))

        code = pick("detailed-error-code") or pick("localization-key")
        detail = pick("description") or pick("technical-details")
        return (str(code) if code else None), (str(detail) if detail else None)

    # -- operations ----------------------------------------------------------------------------------------
    def list_subscriptions(self, etag: str | None = None) -> SubscriptionList | None:
        """``GET /subscriptions``: every subscription the user may see; None when unchanged since `etag`."""
        op = "list_subscriptions"
        headers = {"Accept": self._media("subscription-list")}
        if etag:
            headers["If-None-Match"] = etag
        response = self.request("GET", "/subscriptions", operation=op, headers=headers)
        if response.status_code == 304:
            return NOT_MODIFIED
        data = self._decode(response, op)
        if isinstance(data, dict):  # JSON: {"plcmSubscription[V2]": [...]} (ours: the list's JSON wrapper)
            key = next(
                (k for k in ("plcmSubscriptionV2", "plcmSubscription", "plcm-subscription") if k in data), ""
            )
            data = [_json_parameters(item) for item in data.get(key, [])]
        items = self.validate(data, list[Subscription], op)
        return SubscriptionList(subscriptions=items, etag=response.headers.get("ETag"))

    def get_subscription(self, subscription_id: str, etag: str | None = None) -> Subscription | None:
        """``GET /subscriptions/{id}``; None when unchanged since `etag`."""
        op = "get_subscription"
        headers = {"Accept": self._media("subscription")}
        if etag:
            headers["If-None-Match"] = etag
        response = self.request(
            "GET", "/subscriptions/{id}", path_params={"id": subscription_id}, operation=op, headers=headers
        )
        if response.status_code == 304:
            return NOT_MODIFIED
        sub = self.validate(self._decode(response, op), Subscription, op)
        if sub.entity_tag is None and response.headers.get("ETag"):
            sub.entity_tag = response.headers["ETag"]
        return sub

    def create_subscription(self, subject: str, body: NewSubscription | dict[str, Any]) -> Subscription:
        """POST a subscription to a subject resource and return it as the DMA holds it.

        Args:
            subject: ``conferences``, ``conferences/{id}`` or ``conferences/{id}/participants``.
            body: the subscription; set `passback` to a unique name so that a create whose answer was lost
                can be found again instead of being repeated.
        """
        op = "create_subscription"
        new = build_request(self.vendor, op, NewSubscription, body)
        subject = subject.strip("/")
        parts = subject.split("/")
        if not (
            parts == ["conferences"]
            or (len(parts) == 2 and parts[0] == "conferences")
            or (len(parts) == 3 and parts[0] == "conferences" and parts[2] == "participants")
        ):
            from streamkeeper.vendors.http import RequestInvalid

            raise RequestInvalid(
                self.vendor,
                op,
                f"invalid request: subject {subject!r} is not conferences, "
                "conferences/{id} or conferences/{id}/participants",
            )
        fields = {
            "consumer-url": new.consumer_url,
            "time-to-live": new.time_to_live,
            "username": new.username,
            "password": new.password.get_secret_value() if new.password else None,
            "send-update-notifications": new.send_update_notifications,
            "passback": new.passback,
            "passthru": new.passthru,
            "parameters": new.parameters,
        }
        if new.parameters is not None and self.media_version != "v2":
            from streamkeeper.vendors.http import RequestInvalid

            raise RequestInvalid(self.vendor, op, "invalid request: parameters need media_version v2")
        path = "/" + "/".join(["conferences", "{conference}", "participants"][: len(parts)])
        params = {"conference": parts[1]} if len(parts) > 1 else None

        def do_create() -> Subscription:
            response = self.request(
                "POST",
                path,
                path_params=params,
                operation=op,
                content=self._encode(fields),
                headers={"Content-Type": self._media("subscription"), "Accept": self._media("subscription")},
            )
            location = response.headers.get("Location")
            if not location:
                raise MalformedResponse(
                    self.vendor, op, f"HTTP {response.status_code} without a Location header"
                )
            created = self.get_subscription(location.rstrip("/").rsplit("/", 1)[-1])
            assert created is not None  # no ETag was sent
            return created

        def lookup() -> Subscription | None:
            if not new.passback:
                return None
            return self.find_by_passback(new.passback)

        return self.create(op, do_create, lookup)

    def find_by_passback(self, passback: str) -> Subscription | None:
        """The subscription carrying this passback, if any."""
        listing = self.list_subscriptions()
        assert listing is not None
        return next((s for s in listing.subscriptions if s.passback == passback), None)

    def update_time_to_live(self, subscription_id: str, time_to_live: int, etag: str) -> str | None:
        """``PUT /subscriptions/{id}``: set the time-to-live and restart the timer.

        The ETag goes both in ``If-Match`` and the body's ``entity-tag``. Returns the new ETag when the DMA
        sends one.
        """
        op = "update_time_to_live"
        if not 0 <= time_to_live <= MAX_TIME_TO_LIVE:
            from streamkeeper.vendors.http import RequestInvalid

            raise RequestInvalid(
                self.vendor,
                op,
                f"invalid request: time_to_live {time_to_live} is outside 0..{MAX_TIME_TO_LIVE}",
            )
        response = self.request(
            "PUT",
            "/subscriptions/{id}",
            path_params={"id": subscription_id},
            operation=op,
            content=self._encode({"time-to-live": time_to_live, "entity-tag": etag}),
            headers={
                "Content-Type": self._media("subscription"),
                "Accept": self._media("subscription"),  # errors then come in the same format
                "If-Match": etag,
            },
        )
        return response.headers.get("ETag")

    def delete_subscription(self, subscription_id: str, missing_ok: bool = False) -> None:
        """``DELETE /subscriptions/{id}``."""
        try:
            self.request(
                "DELETE",
                "/subscriptions/{id}",
                path_params={"id": subscription_id},
                operation="delete_subscription",
            )
        except NotFound:
            if not missing_ok:
                raise

    def send_update_notification_now(self, subscription_id: str) -> None:
        """``POST /subscriptions/{id}/send-update-notification-now``; the sequence restarts at 1."""
        self.request(
            "POST",
            "/subscriptions/{id}/send-update-notification-now",
            path_params={"id": subscription_id},
            operation="send_update_notification_now",
            idempotent=True,
        )
