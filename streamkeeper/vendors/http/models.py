"""Base classes for the vendors' pydantic models.

Responses accept unknown extra fields (vendors add fields); our own requests forbid them and are
validated before anything is sent.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from streamkeeper.validation import describe
from streamkeeper.vendors.http.errors import RequestInvalid


class VendorModel(BaseModel):
    """A vendor's answer: unknown fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class RequestModel(BaseModel):
    """A request we send: unknown fields are an error, checked before sending."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


R = TypeVar("R", bound=RequestModel)


def build_request(vendor: str, operation: str, model: type[R], data: R | dict[str, Any]) -> R:
    """Validate a request body, raising `RequestInvalid` that names the failing field."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestInvalid(vendor, operation, f"invalid request: {describe(exc)}") from None
