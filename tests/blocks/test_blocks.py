"""Prefect's standard block test suite over every credentials block, and the secrets they keep."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr

from blocks import ALL_BLOCK_TYPES

DOCS = Path(__file__).parents[2] / "docs" / "blocks.md"


@pytest.mark.parametrize("block", ALL_BLOCK_TYPES, ids=lambda b: b.__name__)
class TestAllBlocks(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block

    # the suite's logo check downloads an image (no network here, and we ship no logo): not collected
    test_has_a_valid_image = None  # type: ignore[assignment]
    # the project has no public address for the UI's "View Docs" link to point at: the blocks have none
    # (test_blocks_link_no_docs_page_and_name_docs_blocks_md below), so the suite's check is not collected
    test_has_a_documentation_url = None  # type: ignore[assignment]


@pytest.mark.parametrize("block", ALL_BLOCK_TYPES, ids=lambda b: b.__name__)
def test_blocks_link_no_docs_page_and_name_docs_blocks_md(block: type[Block]) -> None:
    # a "View Docs" link to an address that does not exist is worse than none (the UI then shows none)
    assert block._documentation_url is None
    assert "docs/blocks.md" in (block.__doc__ or "")
    heading = block.__name__.removesuffix("Credentials").lower()
    assert f"## {heading}" in DOCS.read_text().lower(), f"docs/blocks.md has no section for {block.__name__}"
    for name in block.model_fields:
        assert f"`{name}`" in DOCS.read_text(), f"docs/blocks.md does not describe {block.__name__}.{name}"


@pytest.mark.parametrize("block", ALL_BLOCK_TYPES, ids=lambda b: b.__name__)
def test_secret_fields_are_secretstr(block: type[Block]) -> None:
    secret_words = ("password", "secret", "token")
    for name, field in block.model_fields.items():
        is_plt_partner_id = (
            block.__name__ == "PLTCredentials" and name == "partner_id"
        )  # PLT's only credential
        if any(w in name for w in secret_words) or is_plt_partner_id:
            annotation = field.annotation
            assert annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ()), (
                f"{block.__name__}.{name}"
            )
