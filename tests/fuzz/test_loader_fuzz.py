"""Fuzz tier: generated landing files (records with odd values, and garbage) through the landing loader.

Properties: the loader never fails for a file's content; every file is loaded or quarantined with a
reason (or left for a newer loader when its ``kind`` is a newer record type's name), so nothing is ever
stuck; memory stays bounded (tracemalloc).
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from fuzzkit import FUZZ, TIMEOUT, huge_ints, identifiers, json_values, odd_text, odd_times, scaled
from hypothesis import given, settings
from hypothesis import strategies as st

from streamkeeper.ingest import load_landing
from streamkeeper.ingest.landing import pending_files
from streamkeeper.store import HistoryStore

text_or_odd = st.one_of(
    st.sampled_from(["dma", "stream", "thingspace", "orders", "e-1"]), odd_text, json_values
)
event_records = st.fixed_dictionaries(
    {
        "vendor": st.one_of(st.sampled_from(["dma", "stream", "thingspace"]), text_or_odd),
        "stream": text_or_odd,
        "event_id": st.one_of(identifiers, text_or_odd),
        "received_at": st.one_of(st.just("2026-04-05T06:07:08+00:00"), odd_times),
    },
    optional={
        "kind": st.sampled_from(["event", None, "", 0]),
        "occurred_at": odd_times,
        "subscription_id": text_or_odd,
        "account": text_or_odd,
        "event_type": text_or_odd,
        "previous_event_id": text_or_odd,
        "payload": json_values,
        "route": text_or_odd,
    },
)
gap_records = st.fixed_dictionaries(
    {
        "kind": st.just("gap"),
        "vendor": text_or_odd,
        "stream": text_or_odd,
        "detected_at": st.one_of(st.just("2026-04-05T06:07:08+00:00"), odd_times),
    },
    optional={
        "subscription_id": text_or_odd,
        "expected": st.one_of(huge_ints, json_values),
        "received": st.one_of(huge_ints, json_values),
        "detail": text_or_odd,
    },
)
contents = st.one_of(
    st.builds(
        lambda r, a: json.dumps(r, ensure_ascii=a).encode("utf-8", "surrogatepass"),
        event_records,
        st.booleans(),
    ),
    st.builds(lambda r: json.dumps(r).encode(), gap_records),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(lambda k: json.dumps({"kind": k, "vendor": "dma"}).encode(), st.one_of(odd_text, json_values)),
    st.binary(max_size=300),
)
MEMORY_BOUND = 64 * 1024 * 1024  # a batch of small files costs a few MiB; a blow-up passes this by far


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.slow  # each batch is a DuckDB commit (~0.1-0.2 s on the shared machine)
def test_every_landing_file_is_loaded_or_quarantined(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.duckdb")
    runs = iter(range(1_000_000))

    @settings(FUZZ, max_examples=scaled(40))
    @given(files=st.lists(contents, min_size=1, max_size=12), batch_size=st.sampled_from([1, 4, 100]))
    def one(files: list[bytes], batch_size: int) -> None:
        landing = tmp_path / f"landing-{next(runs)}"
        day = landing / "stream" / "20260405"
        day.mkdir(parents=True)
        paths = []
        for n, content in enumerate(files):
            paths.append(day / f"f{n:03d}.json")
            paths[-1].write_bytes(content)
        tracemalloc.start()
        try:
            report = load_landing(store, landing, batch_size=batch_size)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < MEMORY_BOUND, peak

        left = set(pending_files(landing))
        for path in left:  # only a newer record type stays, for a newer loader
            kind = json.loads(path.read_bytes()).get("kind")
            assert isinstance(kind, str) and kind not in ("event", "gap"), (path, kind)
        rejected = store.query(
            "SELECT landing_path, reason FROM rejected_deliveries WHERE starts_with(landing_path, ?)",
            [str(landing)],
        )
        assert report.quarantined == len(rejected) and all(rejected["reason"])
        for moved in map(Path, rejected["landing_path"]):
            assert moved.exists() and moved.with_name(moved.name + ".reason").exists()
        assert report.received == len(paths) - len(left)

    one()
