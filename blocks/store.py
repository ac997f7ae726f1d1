"""Settings block for the history store, for deployments: the same as ``STREAMKEEPER_STORE`` and friends."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from streamkeeper.store import StoreSettings
from streamkeeper.store.settings import S3Settings


class HistoryStoreSettings(Block):
    """Where streamkeeper's flows keep their history: an embedded DuckDB file, or a DuckLake lakehouse.

    Set ``STREAMKEEPER_STORE_BLOCK`` to the block's name in the workers' (or the work pool's) environment
    and every flow run opens the store it names; without it, the environment variables decide
    (``STREAMKEEPER_STORE``, ``STREAMKEEPER_DATA_PATH``, ``PGPASSWORD``, ``AWS_*``).

    Every field, and how to set up a lake: ``docs/blocks.md`` and ``docs/scale.md`` in the streamkeeper
    repository.

    Example:
        Load the stored history-store settings:
        ```python
        from blocks.store import HistoryStoreSettings

        history_store_settings_block = HistoryStoreSettings.load("BLOCK_NAME")
        settings = history_store_settings_block.get_settings()
        ```
    """

    _block_type_name = "streamkeeper History Store"
    _block_type_slug = "streamkeeper-history-store"

    store: str = Field(
        description=(
            "A DuckDB file path, or DuckDB's DuckLake attach string with a PostgreSQL catalog, e.g. "
            "ducklake:postgres:dbname=streamkeeper host=db.internal port=5432 user=streamkeeper."
        ),
    )
    data_path: str | None = Field(
        default=None,
        description="DuckLake's data path: s3://bucket/prefix/ or a directory every worker mounts.",
    )
    catalog_password: SecretStr | None = Field(
        default=None,
        description="Password of the PostgreSQL catalog's user (never put it in the store string).",
    )
    aws_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint, e.g. https://minio.internal:9000; empty for AWS."
    )
    aws_access_key_id: str | None = Field(default=None, description="S3 access key id.")
    aws_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    aws_region: str | None = Field(default=None, description="S3 region, e.g. eu-west-1.")

    def get_settings(self) -> StoreSettings:
        """The store's settings (secrets stay `SecretStr` until DuckDB and PostgreSQL get them)."""
        settings = StoreSettings(
            target=self.store.strip(),
            data_path=self.data_path or None,
            catalog_password=self.catalog_password,
            s3=S3Settings(
                endpoint_url=self.aws_endpoint_url or None,
                access_key_id=self.aws_access_key_id or None,
                secret_access_key=self.aws_secret_access_key,
                region=self.aws_region or None,
            ),
        )
        settings.check()
        return settings
