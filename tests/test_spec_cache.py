"""The spec-parse cache: a file read again is not parsed again, an edited one is, whatever its mtime and size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streamkeeper.errors import ConfigError
from streamkeeper.spec import SPEC_CACHE_ENTRIES, load_spec, spec_cache_dir, spec_cache_key

SPEC = """dma:
  - connection: cache-dma
    subscriptions:
      - {name: a, subject: all_conferences, consumer_url: 'http://x.test/a', time_to_live: 3600}
"""


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMKEEPER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def ttl(path: Path) -> int | None:
    return load_spec(path).dma[0].subscriptions[0].time_to_live


def test_an_unchanged_file_is_taken_from_the_cache_and_an_edited_one_parsed(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    assert ttl(path) == 3600
    entry = spec_cache_dir() / f"{spec_cache_key(SPEC)}.json"
    assert json.loads(entry.read_text())["dma"][0]["connection"] == "cache-dma"

    # the file unchanged: what the cache holds is what loads (the YAML is not parsed again)
    cached = json.loads(entry.read_text())
    cached["dma"][0]["subscriptions"][0]["time_to_live"] = 1800
    entry.write_text(json.dumps(cached))
    assert ttl(path) == 1800

    # edited, with the same size and modification time: the content's hash tells
    stat = path.stat()
    path.write_text(SPEC.replace("3600", "1200"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert ttl(path) == 1200

    # an edit with a mistake still names the line, and a torn cache entry is parsed again
    path.write_text(SPEC.replace("3600", "999999"))
    with pytest.raises(ConfigError, match=r"spec.yaml:4: dma\[0\]\.subscriptions\[0\]\.time_to_live"):
        load_spec(path)
    entry.write_text('{"dma": [')
    path.write_text(SPEC)
    assert ttl(path) == 3600
    assert load_spec(path, cache=False) == load_spec(path)


def test_a_cached_entry_the_model_refuses_is_parsed_again_to_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    load_spec(path)
    entry = spec_cache_dir() / f"{spec_cache_key(SPEC)}.json"
    entry.write_text(json.dumps({"dma": [{"connection": "cache-dma", "subscriptions": [{"name": "a"}]}]}))
    assert ttl(path) == 3600  # the cache's content is refused; the file itself is fine


def test_a_changed_setting_is_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("'http://x.test/a'", "'${STREAMKEEPER_RECEIVER_URL}/dma/a'"))
    monkeypatch.setenv("STREAMKEEPER_RECEIVER_URL", "https://one.test")
    assert load_spec(path).dma[0].subscriptions[0].consumer_url == "https://one.test/dma/a"
    monkeypatch.setenv("STREAMKEEPER_RECEIVER_URL", "https://two.test")
    assert load_spec(path).dma[0].subscriptions[0].consumer_url == "https://two.test/dma/a"


def test_a_missing_file_is_one_line_with_or_without_the_cache(tmp_path: Path) -> None:
    for cache in (True, False):
        with pytest.raises(ConfigError, match="spec file not found"):
            load_spec(tmp_path / "nope.yaml", cache=cache)


def test_the_cache_keeps_its_latest_entries(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    for n in range(SPEC_CACHE_ENTRIES + 3):
        path.write_text(SPEC + f"# edit {n}\n")
        load_spec(path)
    assert len(list(spec_cache_dir().glob("*.json"))) == SPEC_CACHE_ENTRIES
