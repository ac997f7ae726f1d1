"""What the flows' parameters share: how optional ones look in the Prefect UI, and how paths are read.

Help text: every parameter is described once, in its flow's docstring (``Args:``), which is where Prefect
3.8.8 takes the run form's help from (it drops ``Field(description=...)``); a test checks every
deployment's form has help on every parameter.

Optional parameters: Prefect shows a ``str | None`` parameter as a choice of "str" or "None", with the
"None" tab on by default (``Property is type "None"``). `Text` and `Names` show a plain text box or list
instead, empty by default; an empty one arrives as ``""`` or ``[]`` and means not given (`given`), so
Python callers may still pass None.

Paths: a relative path is taken from the flow run's working directory: a deployment's is where
``prefect deploy`` ran (its ``set_working_directory`` step). `existing_file` says so when a file is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

from prefect.runtime import deployment
from pydantic import Field, WithJsonSchema

from streamkeeper.errors import ConfigError

Text = Annotated[str | None, WithJsonSchema({"type": "string"}), Field(json_schema_extra={"default": ""})]
"""An optional text parameter: a plain text box in the UI; empty means not given."""

Names = Annotated[
    list[str] | None,
    WithJsonSchema({"type": "array", "items": {"type": "string"}}),
    Field(json_schema_extra={"default": []}),
]
"""An optional list of names: a plain list in the UI; empty means none."""

T = TypeVar("T")


def given(value: T | None) -> T | None:
    """None for a parameter left empty in the UI (``""``, ``[]``), else the value."""
    return value or None


def working_directory_note() -> str:
    """Where relative paths are taken from, in words, for an error message."""
    where = "the deployment's working directory" if deployment.get_id() else "the working directory"
    return f"relative paths are taken from {where}, {Path.cwd()}"


def existing_file(path: str, what: str = "spec file") -> Path:
    """`path` as a file that exists; else a `ConfigError` naming it and, for a relative path, the
    directory it was looked for in."""
    file = Path(path).expanduser()
    if not file.is_file():
        where = f" ({working_directory_note()})" if not file.is_absolute() else ""
        state = "is a directory, not a file" if file.is_dir() else "not found"
        raise ConfigError(f"{what} {state}: {path}{where}")
    return file


__all__ = ["Names", "Text", "existing_file", "given", "working_directory_note"]
