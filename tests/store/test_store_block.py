"""The history-store settings block: a deployment's flow runs open the store it names."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from blocks.store import HistoryStoreSettings
from tasks.store import STORE_BLOCK_ENV, history_store


def test_connect_store_takes_secrets_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from blocks.registry import block_class, build_block_values
    from streamkeeper.errors import ConfigError

    cls = block_class("store")
    assert cls is HistoryStoreSettings
    monkeypatch.setenv("STREAMKEEPER_STORE_CATALOG_PASSWORD", "from-env-pw")
    target = "store=ducklake:postgres:dbname=s host=db user=u"
    values = build_block_values("store", cls, [target, "data_path=s3://b/lake/"], interactive=False)
    settings = HistoryStoreSettings.model_validate(values).get_settings()
    assert settings.kind == "lake" and settings.catalog_password is not None
    assert settings.catalog_password.get_secret_value() == "from-env-pw"
    with pytest.raises(ConfigError, match="secrets are not taken from the command line"):
        build_block_values("store", cls, [target, "catalog_password=x"], interactive=False)


@pytest.mark.slow
def test_flow_runs_open_the_lake_the_block_names(
    prefect_api: None, lake: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    HistoryStoreSettings(
        store=lake["STREAMKEEPER_STORE"],
        data_path=lake["STREAMKEEPER_DATA_PATH"],
        catalog_password=SecretStr("unused-with-trust"),
        aws_endpoint_url=lake["AWS_ENDPOINT_URL"],
        aws_access_key_id=lake["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=SecretStr(lake["AWS_SECRET_ACCESS_KEY"]),
        aws_region=lake["AWS_REGION"],
    ).save("test-lake", overwrite=True)
    for name in lake:  # nothing in the environment but the block's name
        monkeypatch.delenv(name)
    monkeypatch.setenv("STREAMKEEPER_DB", "/nonexistent/not-this.duckdb")
    monkeypatch.setenv(STORE_BLOCK_ENV, "test-lake")
    store = history_store()
    assert store.settings.kind == "lake" and store.settings.data_path == lake["STREAMKEEPER_DATA_PATH"]
    store.set_cursors({"block:test": "1"})
    assert store.cursors("block:") == {"block:test": "1"}
    assert "unused-with-trust" not in repr(store.settings) and "unused-with-trust" not in store.location


@pytest.mark.slow
def test_a_missing_block_is_one_clear_line(prefect_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamkeeper.errors import ConfigError

    monkeypatch.setenv(STORE_BLOCK_ENV, "no-such-store-block")
    with pytest.raises(ConfigError, match="no streamkeeper-history-store block"):
        history_store()
