"""Every deployment's run form, as the Prefect UI builds it from the flow's parameter schema: help on
every parameter (from the docstring, written once), plain fields for optional ones, no secret among them;
and a user mistake in a run is one line in the run's logs."""

from __future__ import annotations

import asyncio
import inspect
import os
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pollkit import wait_for
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_docstrings, parameter_schema
from pydantic import SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
SECRET_NOUNS = {
    "code",
    "codes",
    "password",
    "passwords",
    "secret",
    "secrets",
    "token",
    "tokens",
    "key",
    "keys",
}


def flow_of(entrypoint: str) -> Any:
    previous = os.getcwd()
    os.chdir(ROOT)  # entrypoints are relative to the project root, as for `prefect deploy`
    try:
        return load_flow_from_entrypoint(entrypoint)
    finally:
        os.chdir(previous)


@pytest.fixture(params=DEPLOYMENTS, ids=lambda d: d["name"])
def deployment(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(request.param)


def test_every_parameter_of_every_deployment_has_help_written_once(deployment: dict[str, Any]) -> None:
    flow = flow_of(deployment["entrypoint"])
    schema = parameter_schema(flow).model_dump_for_openapi()
    docstrings = parameter_docstrings(inspect.getdoc(flow.fn))
    names = list(inspect.signature(flow.fn).parameters)
    assert list(schema["properties"]) == names
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{deployment['name']}.{name} has no help in the run form"
        assert prop["description"] == docstrings[name]  # from the docstring's Args: ...
        hints = typing.get_type_hints(flow.fn, include_extras=True)
        described = [
            m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, FieldInfo) and m.description
        ]
        assert not described, f"{deployment['name']}.{name}: help written twice (Field(description=...))"


def test_optional_parameters_are_plain_fields_with_a_default_the_form_accepts(
    deployment: dict[str, Any],
) -> None:
    # Prefect's form shows `X | None` as a choice of X or "None" (the "Property is type None" field), and
    # refuses a default of None on a plain field ("None is not of type 'string'")
    schema = parameter_schema(flow_of(deployment["entrypoint"])).model_dump_for_openapi()
    for name, prop in schema["properties"].items():
        assert "anyOf" not in prop and "type" in prop, f"{deployment['name']}.{name}: {prop}"
        if "default" in prop:
            assert prop["default"] is not None, f"{deployment['name']}.{name} defaults to None"
    for name, value in deployment.get("parameters", {}).items():
        assert name in schema["properties"], f"prefect.yaml sets {name}, which {deployment['name']} lacks"
        assert value is not None


def test_no_secret_is_a_plain_parameter(deployment: dict[str, Any]) -> None:
    # a run's parameters are stored and shown in its Parameters tab: secrets come through the pause form
    # (onboarding's OAuth codes) or a Secret block named by a *_block parameter
    flow = flow_of(deployment["entrypoint"])
    hints = typing.get_type_hints(flow.fn)
    for name in inspect.signature(flow.fn).parameters:
        assert "SecretStr" not in str(hints[name]) and hints[name] is not SecretStr, name
        assert name.split("_")[-1] not in SECRET_NOUNS, f"{deployment['name']}.{name} looks like a secret"


def test_empty_optional_fields_mean_not_given(
    db_path: Path, prefect_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what the form sends for a text box left empty: "" (and [] for a list); "" is not a second spec
    from flows.provision import provision_subscriptions
    from streamkeeper.errors import ConfigError

    monkeypatch.setenv("STREAMKEEPER_DB", str(db_path))  # db_path "" means this one

    spec = "plt:\n  - connection: nowhere\n    streams: []\n"
    with pytest.raises(ConfigError, match=r"plt/nowhere: plt block 'nowhere' not found"):
        provision_subscriptions(spec_yaml=spec, spec_path="", db_path="", dry_run=True)


async def _logs(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        return await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )


def test_a_user_mistake_in_a_flow_run_is_one_log_line_naming_the_working_directory(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.provision import provision_subscriptions

    monkeypatch.chdir(tmp_path)
    state = provision_subscriptions(spec_path="data/specs/exmaple.yaml", return_state=True)
    assert state.is_failed()
    expected = (
        "ConfigError: spec file not found: data/specs/exmaple.yaml "
        f"(relative paths are taken from the working directory, {tmp_path})"
    )

    def logged() -> list[Any]:
        logs = asyncio.run(_logs(state.state_details.flow_run_id))
        return logs if any(log.level >= 40 for log in logs) else []

    logs = wait_for(logged)
    errors = [log.message for log in logs if log.level >= 40]
    assert errors == [expected]  # one line, and no "Engine execution exited with unexpected exception"
    assert not [log.message for log in logs if "Traceback" in log.message]
