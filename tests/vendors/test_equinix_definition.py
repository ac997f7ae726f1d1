"""Contract: the Equinix emulator's answers (and the client's requests) against Equinix's published definition.

`equinix_definition` is the project's JSON Schema of the SmartView streaming API and the token API, written
from the definitions Equinix publishes (its docstring lists the defects of the definition it repairs). The
emulator is driven over loopback HTTP through every answer streamkeeper reads: token, subscriptions (each
channel type, every message type filter), errors, and pages of subscription data with every message type
and heartbeats.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from equinix_definition import list_problems, problems

from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EquinixSandbox
from streamkeeper.spec import equinix_body, load_spec_text
from streamkeeper.vendors.equinix import StreamingSubscriptionRequest

STREAMING = "/smartview/v2/streaming/subscriptions"
DATA = "/smartview/v2/streaming/subscriptionData"
EVERY_TYPE: dict[str, Any] = {
    "asset": [
        {"accountNumber": "135888", "ibx": ["DE2"], "assetClassification": ["MECHANICAL"], "assetId": ["x"]}
    ],
    "environmental": [{"accountNumber": "135888", "ibx": ["DE2", "PA4"], "level": ["ZONE", "IBX"]}],
    "power": [{"accountNumber": "135888", "ibx": ["DE2"]}],
    "meteredPower": [{"accountNumber": "135888", "ibx": ["DE2"]}],
    "systemAlert": [{"accountNumber": "135888", "ibx": ["DE2"]}],
    "customAlert": [{"accountNumber": "135888", "ibx": ["DE2"], "user": "abc"}],
}
CHANNELS: dict[str, dict[str, Any]] = {
    "WEBHOOK": {
        "channelType": "WEBHOOK",
        "webhookChannelConfiguration": {
            "url": "https://hooks.example/equinix",
            "batchSize": 5,
            "numberOfConcurrentCalls": 20,
            "numberOfRetries": 5,
            "sslCertificate": "ZkFzZLY1IGRpY31kZXI=",
        },
    },
    "AWS_IOT_CORE": {
        "channelType": "AWS_IOT_CORE",
        "awsIotCoreChannelConfiguration": {"url": "https://b4c3mzxe8syvhd-ats.iot.us-west-2.amazonaws.com"},
    },
    "AZURE": {"channelType": "AZURE", "azureChannelConfiguration": {"batchSize": 20}},
}


class Api:
    """Raw HTTP against the emulator, with a token of the given organisation's client."""

    def __init__(self, url: str, client_id: str = DEFAULT_CLIENT_ID, secret: str = DEFAULT_CLIENT_SECRET):
        self.url = url
        answer = httpx.post(
            f"{url}/oauth2/v1/token",
            json={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )
        self.token_answer = answer.json()
        self.headers = {"Authorization": f"Bearer {self.token_answer['access_token']}"}

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=self.headers, params=params)

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", headers=self.headers, json=body)

    def put(self, path: str, body: Any) -> httpx.Response:
        return httpx.put(f"{self.url}{path}", headers=self.headers, json=body)


@pytest.fixture
def sandbox() -> EquinixSandbox:
    return EquinixSandbox()


@pytest.fixture
def api(serve: Callable[..., SandboxServer], sandbox: EquinixSandbox) -> Api:
    return Api(serve(sandbox).url)


def created_id(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    return response.headers["Location"].rsplit("/", 1)[-1]


def test_token_answer_and_token_error_match_the_token_definition(api: Api, sandbox: EquinixSandbox) -> None:
    assert problems("Oauth2TokenResponse", api.token_answer) == []
    refused = httpx.post(
        f"{sandbox.url}/oauth2/v1/token",
        json={"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": "wrong"},
    )
    assert refused.status_code == 400  # doc: 400, "Please enter a valid client id/client secret..."
    assert problems("Oauth2TokenErrorResponse", refused.json()) == []
    for body in ({"client_id": DEFAULT_CLIENT_ID}, [], {"grant_type": "password"}):
        answer = httpx.post(f"{sandbox.url}/oauth2/v1/token", json=body)
        assert answer.status_code == 400
        assert problems("Oauth2TokenErrorResponse", answer.json()) == []


@pytest.mark.parametrize("channel_type", sorted(CHANNELS))
def test_subscriptions_of_every_channel_type_match_subscription_response(
    serve: Callable[..., SandboxServer], channel_type: str
) -> None:
    sandbox = EquinixSandbox()
    sandbox.add_client("org-client", "org-secret", f"org-{channel_type}")  # one channel type per organisation
    api = Api(serve(sandbox).url, "org-client", "org-secret")
    body = {"messageType": EVERY_TYPE, "channel": CHANNELS[channel_type]}
    assert problems("SubscriptionRequest", body) == []
    subscription_id = created_id(api.post(STREAMING, body))

    one = api.get(f"{STREAMING}/{subscription_id}").json()
    assert problems("SubscriptionResponse", one) == []
    assert one["channel"] == CHANNELS[channel_type] and one["messageType"] == EVERY_TYPE
    assert list_problems("SubscriptionResponse", api.get(STREAMING).json()) == []

    changed = {**body, "messageType": {"power": EVERY_TYPE["power"]}}
    assert api.put(f"{STREAMING}/{subscription_id}", changed).status_code == 204
    assert problems("SubscriptionResponse", api.get(f"{STREAMING}/{subscription_id}").json()) == []


def test_error_answers_match_api_error(api: Api) -> None:
    first = {"messageType": EVERY_TYPE, "channel": CHANNELS["WEBHOOK"]}
    created_id(api.post(STREAMING, first))
    cases = {
        "a second channel type in the organisation": {**first, "channel": CHANNELS["AWS_IOT_CORE"]},
        "no message type": {"messageType": {}, "channel": CHANNELS["WEBHOOK"]},
        "a filter's ibx is not an array": {"messageType": {"power": [{"accountNumber": "1", "ibx": "DE2"}]}},
        "batchSize above 20": {
            **first,
            "channel": {
                "channelType": "WEBHOOK",
                "webhookChannelConfiguration": {"url": "https://h", "batchSize": 21},
            },
        },
        "numberOfConcurrentCalls below 20": {
            **first,
            "channel": {
                "channelType": "WEBHOOK",
                "webhookChannelConfiguration": {"url": "https://h", "numberOfConcurrentCalls": 19},
            },
        },
        "numberOfRetries 0": {
            **first,
            "channel": {
                "channelType": "WEBHOOK",
                "webhookChannelConfiguration": {"url": "https://h", "numberOfRetries": 0},
            },
        },
        "the REST channel type, which the definition does not have": {
            **first,
            "channel": {"channelType": "REST"},
        },
    }
    for case, body in cases.items():
        answer = api.post(STREAMING, body)
        assert answer.status_code in (400, 422), (case, answer.status_code)
        error = answer.json()
        assert problems("ApiError", error) == [], case
        assert isinstance(error.get("additionalInfo", {}), dict), case  # doc: an object, not a list
    missing = api.get(f"{STREAMING}/000000000000000000000000")
    assert missing.status_code == 404 and problems("ApiError", missing.json()) == []
    bad_query = api.get(f"{DATA}/000000000000000000000000", limit=0)
    assert bad_query.status_code in (400, 404) and problems("ApiError", bad_query.json()) == []


@pytest.mark.parametrize("heartbeat_style", ["data", "message"])
def test_subscription_data_pages_match_the_definition_with_every_message_type(
    api: Api, sandbox: EquinixSandbox, heartbeat_style: str
) -> None:
    sandbox.heartbeat_style = heartbeat_style  # type: ignore[assignment]
    sandbox.emit_step = timedelta(hours=12)  # a heartbeat every 14 messages
    subscription_id = created_id(
        api.post(STREAMING, {"messageType": EVERY_TYPE, "channel": CHANNELS["WEBHOOK"]})
    )
    sandbox.emit(subscription_id, 240)

    seen: dict[str, list[dict[str, Any]]] = {}
    offset, limit = 0, 50
    while True:
        page = api.get(f"{DATA}/{subscription_id}", offset=offset, limit=limit).json()
        if heartbeat_style == "data":
            assert problems("SubscriptionData", page) == [], offset
        pagination = page["pagination"]
        assert pagination["offset"] == offset and pagination["total"] == 240
        assert ("previous" in pagination) == (offset > 0)  # doc: present only when that page exists
        assert ("next" in pagination) == (offset + limit < 240)
        for group, messages in page.items():
            if group != "pagination":
                seen.setdefault(group, []).extend(messages)
        if "next" not in pagination:
            break
        assert pagination["next"].startswith("?")  # doc: a relative URL, "?offset=200&limit=100"
        offset += limit

    groups = {g: m for g, m in seen.items() if m}
    assert set(groups) == {
        "alarmMessageData",
        "alertMessageData",
        "environmentMessageData",
        "meteredPowerMessageData",
        "powerMessageData",
        "tagPointMessageData",
    }
    assert {m["type"] for m in groups["alarmMessageData"]} == {"system-alert"}  # doc: alarm data
    assert {m["type"] for m in groups["alertMessageData"]} == {"custom-alert"}
    for group in ("environmentMessageData", "meteredPowerMessageData", "tagPointMessageData"):
        assert all(isinstance(m["data"]["reading"]["value"], str) for m in groups[group]), group
    for message in groups["powerMessageData"]:
        assert {"realPower", "apparentPower", "current"} <= set(message["data"])
        assert "reading" not in message["data"] and "tag" not in message["data"]
        assert all(isinstance(message["data"][k]["value"], str) for k in ("realPower", "apparentPower"))
    heartbeats = [
        m
        for m in groups["alarmMessageData"] + groups["alertMessageData"]
        if m["data"].get("heartbeat") is True or m.get("heartbeat") == "true"
    ]
    assert len(heartbeats) == 240 // 14
    if heartbeat_style == "data":
        assert all(m["data"]["heartbeat"] is True and "heartbeat" not in m for m in heartbeats)
    else:
        assert all(m["heartbeat"] == "true" and "heartbeat" not in m["data"] for m in heartbeats)


def test_the_clients_requests_match_subscription_request() -> None:
    spec = load_spec_text(
        """
equinix:
  - connection: eqx
    api: streaming
    subscriptions:
      - name: everything
        families:
          asset: [{account: "1", ibx: [DE2], asset_classification: [MECHANICAL], asset_id: [a1]}]
          environmental: [{account: "1", ibx: [DE2, PA4], level: [CAGE]}]
          power: [{account: "1", ibx: [DE2]}]
          metered_power: [{account: "1", ibx: [DE2]}]
          system_alert: [{account: "1", ibx: [DE2]}]
          custom_alert: [{account: "1", ibx: [DE2], user: abc}]
        channel: {url: "https://rx.example/equinix/a", batch_size: 5, number_of_retries: 1, ssl_certificate: Zk=}
      - name: power
        families: {power: [{account: "1", ibx: [PA4]}]}
        channel: {url: "https://rx.example/equinix/b"}
"""
    )
    for sub in spec.equinix[0].subscriptions:
        body = StreamingSubscriptionRequest.model_validate(equinix_body("streaming", sub)).to_body()
        assert problems("SubscriptionRequest", body) == [], sub.name
        assert body["channel"]["channelType"] == "WEBHOOK"  # the spec's default channel type
