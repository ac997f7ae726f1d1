"""The provisioning spec: the example loads, and every mistake names the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamkeeper.errors import ConfigError
from streamkeeper.spec import ProvisioningSpec, equinix_body, load_spec, load_spec_text

EXAMPLE = Path(__file__).parents[2] / "data" / "specs" / "example.yaml"


def test_the_example_covers_all_five_vendors() -> None:
    spec = load_spec(EXAMPLE)
    assert [vendor for vendor, _ in spec.connections()] == ["plt", "dma", "stream", "thingspace", "equinix"]
    assert {c.connection for _, c in spec.connections()} == {
        "demo-plt",
        "demo-dma",
        "demo-stream",
        "demo-thingspace",
        "demo-equinix",
    }
    assert spec.dma[0].subscriptions[1].subject_path == "conferences/1"
    assert spec.dma[0].subscriptions[2].subject_path == "conferences/2/participants"
    # block names only: a spec never holds a secret
    assert "password" not in EXAMPLE.read_text().replace("password_block", "")


def test_inline_json_and_an_empty_vendor_list() -> None:
    spec = load_spec_text('{"dma": [{"connection": "d", "subscriptions": []}]}')
    assert isinstance(spec, ProvisioningSpec) and spec.count() == 0


DMA = "dma:\n  - connection: d\n    subscriptions:\n"
ONE_DMA = "      - name: a\n        consumer_url: http://x.test/a\n        time_to_live: 10\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            DMA + "      - name: a\n        consumer_url: http://x\n        time_to_live: 100000\n",
            "x.yaml:6: dma[0].subscriptions[0].time_to_live: Input should be less than or equal to 93600",
        ),
        (
            DMA + "      - name: a\n        consumer_url: ftp://x\n        time_to_live: 1\n",
            "x.yaml:5: dma[0].subscriptions[0].consumer_url: Value error, must be an http(s) URL",
        ),
        (
            DMA + ONE_DMA + ONE_DMA,
            "x.yaml:7: dma[0].subscriptions[1].name: subscription name 'a' is used more than once",
        ),
        (
            DMA
            + "      - name: a\n        subject: conference\n        consumer_url: http://x\n        time_to_live: 1\n",
            "x.yaml:4: dma[0].subscriptions[0]: Value error, subject conference needs a conference id",
        ),
        (
            DMA + ONE_DMA + "        colour: red\n",
            "x.yaml:7: dma[0].subscriptions[0].colour: Extra inputs are not permitted",
        ),
        (
            "dma:\n  - connection: d\n  - connection: d\n",
            "x.yaml:3: dma[1].connection: connection 'd' is listed",
        ),
        ("dma:\n  - connection: Has_Caps\n", "x.yaml:2: dma[0].connection: String should match pattern"),
        (
            "thingspace:\n  - connection: t\n    targets:\n      - name: r\n        address: h:1\n"
            "        subscriptions:\n          - {name: a, streamkind: ts.event}\n"
            "      - name: r2\n        address: h:2\n        subscriptions:\n"
            "          - {name: b, streamkind: ts.event}\n",
            "x.yaml:11: thingspace[0].targets[1].subscriptions[0].streamkind: subscriptions 'a' and 'b' both "
            "use streamkind ts.event: ThingSpace allows one subscription per streamkind per account",
        ),
        (
            "thingspace:\n  - connection: t\n    targets:\n      - name: r\n        address: arn:aws:x\n"
            "        scheme: streamawsiot\n        credentials: {bearer_token_block: b}\n",
            "x.yaml:4: thingspace[0].targets[0]: Value error, credentials are for streamrest targets only",
        ),
        (
            "thingspace:\n  - connection: t\n    targets:\n      - name: r\n        address: h:1\n"
            "        credentials: {username: u}\n",
            "x.yaml:6: thingspace[0].targets[0].credentials: Value error, Basic credentials need both",
        ),
        (
            "stream:\n  - connection: s\n    targeting:\n      - {name: a, context: m, flag: f, segment: g}\n",
            "x.yaml:4: stream[0].targeting[0]: Value error, give exactly one of flag or segment",
        ),
        (
            "equinix:\n  - connection: e\n    api: streams\n    subscriptions:\n      - name: a\n"
            "        families: {environmental: [{account: '1', ibx: PA4}]}\n",
            "x.yaml:6: equinix[0].subscriptions[0].families.environmental: environmental is not a family of "
            "the streams API",
        ),
        (
            "equinix:\n  - connection: e\n    api: streaming\n    subscriptions:\n      - name: a\n"
            "        families:\n          power:\n            - account: '1'\n              ibx: PA4\n"
            "              level: [IBX]\n",
            "x.yaml:10: equinix[0].subscriptions[0].families.power[0].level: not a filter of power",
        ),
        (
            "equinix:\n  - connection: e\n    api: streaming\n    subscriptions:\n      - name: a\n"
            "        families: {power: [{account: '1', ibx: PA4}]}\n        channel: {type: WEBHOOK}\n",
            "x.yaml:7: equinix[0].subscriptions[0].channel: channel.webhook_channel_configuration.url: Field",
        ),
        (
            "equinix:\n  - connection: e\n    api: streaming\n    subscriptions:\n"
            "      - {name: a, families: {power: [{account: '1', ibx: PA4}]}, channel: {url: 'https://h/e'}}\n"
            "      - {name: b, families: {power: [{account: '1', ibx: [PA4]}]}, channel: {url: 'https://h/e'}}\n",
            "x.yaml:6: equinix[0].subscriptions[1].families: 'b' is identical to 'a'",
        ),
        (
            "equinix:\n  - connection: e\n    api: streams\n    subscriptions:\n"
            "      - {name: a, families: {power: [{account: '1', ibx: PA4}]}}\n"
            "      - {name: b, families: {alert: [{account: '1', ibx: PA4}]}}\n",
            "x.yaml:6: equinix[0].subscriptions[1]: the streams API holds one subscription per organisation",
        ),
        (
            "equinix:\n  - connection: e\n    api: streaming\n    subscriptions:\n      - name: a\n"
            "        families: {power: [{account: '1', ibx: PA4}]}\n        channel: {type: REST}\n",
            "x.yaml:7: equinix[0].subscriptions[0].channel.type: Input should be 'AWS_IOT_CORE', 'WEBHOOK' or",
        ),
        (
            "equinix:\n  - connection: e\n    api: streaming\n    subscriptions:\n      - name: a\n"
            "        families: {power: [{account: '1', ibx: PA4}]}\n"
            "        channel: {url: 'https://h/e', batch_size: 21}\n",
            "x.yaml:7: equinix[0].subscriptions[0].channel.batch_size: Input should be less than or equal to 20",
        ),
        (
            "equinix:\n  - connection: e\n    api: streaming\n    subscriptions:\n      - name: a\n"
            "        families: {power: [{account: '1', ibx: PA4}]}\n"
            "        channel: {url: 'https://h/e', number_of_concurrent_calls: 10}\n",
            "x.yaml:7: equinix[0].subscriptions[0].channel.number_of_concurrent_calls: Input should be greater",
        ),
        (
            "equinix:\n  - connection: e\n    api: streaming\n    subscriptions:\n      - name: a\n"
            "        families: {power: [{account: '1', ibx: PA4}]}\n"
            "        channel: {url: 'https://h/e', number_of_retries: 0}\n",
            "x.yaml:7: equinix[0].subscriptions[0].channel.number_of_retries: Input should be greater",
        ),
    ],
)
def test_mistakes_name_the_line_and_the_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, source="x.yaml")
    assert expected in str(info.value), str(info.value)


def test_the_streams_api_takes_one_ibx_per_filter_entry() -> None:
    spec = load_spec_text(
        "equinix:\n  - connection: e\n    api: streams\n    subscriptions:\n"
        "      - name: a\n        families: {alarm: [{account: '1', ibx: [PA4, PA5], alarm_type: [ABSOLUTE]}]}\n"
        "        config: {method: PULL, provider: AWS, token_block: eq-token}\n"
    )
    body = equinix_body("streams", spec.equinix[0].subscriptions[0])
    assert body == {
        "alarm": [
            {"account_no": "1", "ibx": "PA4", "alarm_type": ["ABSOLUTE"]},
            {"account_no": "1", "ibx": "PA5", "alarm_type": ["ABSOLUTE"]},
        ],
        "config": {"method": "PULL", "provider": "AWS"},
    }


def test_one_channel_type_per_equinix_organisation() -> None:
    text = (
        "equinix:\n  - connection: e\n    api: streaming\n    subscriptions:\n"
        "      - {name: a, families: {power: [{account: '1', ibx: PA4}]}, channel: {url: 'https://x.test/h'}}\n"
        "      - name: b\n        families: {power: [{account: '2', ibx: PA4}]}\n"
        "        channel: {type: AWS_IOT_CORE, url: 'https://x.iot.test'}\n"
    )
    with pytest.raises(
        ConfigError, match=r"x.yaml:8: equinix\[0\].subscriptions\[1\].channel: channel type AWS_IOT_CORE"
    ):
        load_spec_text(text, source="x.yaml")


def test_the_equinix_api_defaults_to_the_seeds_streams_and_the_channel_to_webhook() -> None:
    spec = load_spec_text(
        "equinix:\n  - connection: e\n    subscriptions:\n"
        "      - {name: a, families: {power: [{account: '1', ibx: PA4}]}}\n"
        "  - connection: f\n    api: streaming\n    subscriptions:\n"
        "      - {name: b, families: {power: [{account: '1', ibx: PA4}]}, channel: {url: 'https://h/e'}}\n"
    )
    assert [c.api for c in spec.equinix] == ["streams", "streaming"]  # VENDORS.md: the seed's API by default
    body = equinix_body("streaming", spec.equinix[1].subscriptions[0])
    assert body["channel"] == {
        "channel_type": "WEBHOOK",  # a channel type the published definition allows
        "webhook_channel_configuration": {"url": "https://h/e"},
    }
