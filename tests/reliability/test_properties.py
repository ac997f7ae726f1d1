"""Property-based tests (hypothesis) for the spec parser and the exactly-once event load."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from streamkeeper.errors import ConfigError
from streamkeeper.store import HistoryStore
from streamkeeper.yamlspec import load_yaml_text

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# -- the exactly-once load ---------------------------------------------------------------------------------
delivery = st.tuples(st.sampled_from(["plt", "dma"]), st.sampled_from(["s1", "s2"]), st.integers(0, 40))


@pytest.mark.slow  # hypothesis over real DuckDB loads: ~5-12 s
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deliveries=st.lists(delivery, min_size=1, max_size=120), cuts=st.lists(st.integers(0, 120), max_size=6)
)
def test_each_delivery_lands_once_however_it_is_batched(
    deliveries: list[tuple[str, str, int]], cuts: list[int]
) -> None:
    rows = [
        {
            "vendor": v,
            "stream": s,
            "event_id": f"{s}:{n}",
            "subscription_id": None,
            "account": None,
            "event_type": "t",
            "occurred_at": T0,
            "received_at": T0,
            "payload": {"n": n},
        }
        for v, s, n in deliveries
    ]
    bounds = sorted({0, len(rows), *(c for c in cuts if c < len(rows))})
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "p.duckdb")
        inserted = 0
        for start, end in zip(bounds, bounds[1:], strict=False):
            inserted += store.load_events(pd.DataFrame(rows[start:end]))
        inserted += store.load_events(pd.DataFrame(rows))  # a full redelivery adds nothing
        stored = store.query("SELECT vendor, stream, event_id FROM events")
    distinct = {(v, s, f"{s}:{n}") for v, s, n in deliveries}
    assert inserted == len(distinct)
    assert set(map(tuple, stored.values.tolist())) == distinct
    assert len(stored) == len(distinct)


# -- the spec parser ---------------------------------------------------------------------------------------
class Sub(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    ttl: int = Field(ge=0, le=93600)
    enabled: bool = True


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subscriptions: list[Sub]


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
subs = st.fixed_dictionaries({"name": names, "ttl": st.integers(0, 93600), "enabled": st.booleans()})


@settings(max_examples=60, deadline=None)
@given(items=st.lists(subs, min_size=1, max_size=8))
def test_valid_specs_round_trip(items: list[dict[str, object]]) -> None:
    spec = load_yaml_text(yaml.safe_dump({"subscriptions": items}, sort_keys=False), Spec)
    assert [s.model_dump() for s in spec.subscriptions] == items


@settings(max_examples=60, deadline=None)
@given(items=st.lists(subs, min_size=1, max_size=8), data=st.data())
def test_a_bad_value_is_reported_at_its_line(items: list[dict[str, object]], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(items) - 1))
    items[index]["ttl"] = data.draw(st.one_of(st.integers(93601, 10**9), st.integers(-(10**9), -1)))
    text = yaml.safe_dump({"subscriptions": items}, sort_keys=False)
    try:
        load_yaml_text(text, Spec, source="s.yaml")
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError("an out-of-range ttl was accepted")
    assert f"subscriptions[{index}].ttl" in message
    line = int(message.split("s.yaml:", 1)[1].split(":", 1)[0])
    assert text.splitlines()[line - 1].strip().lstrip("- ").startswith("ttl:"), (message, text)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_is_a_spec_or_a_config_error(text: str) -> None:
    try:
        load_yaml_text(text, Spec)
    except ConfigError as exc:
        assert str(exc)
