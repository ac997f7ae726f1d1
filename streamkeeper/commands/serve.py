"""``streamkeeper serve``: run the deployments of ``prefect.yaml`` with their schedules, in this one process.

The same deployments as ``prefect deploy --all`` (entrypoint, parameters, schedules, concurrency limit,
description, tags), served by `prefect.serve` instead of a work pool and a worker. Scheduled runs need a
Prefect server: its scheduler creates them (Prefect's ephemeral API has none: a served cron flow fired no
run in 196 s here), so ``serve`` asks for ``PREFECT_API_URL``.
"""

from __future__ import annotations

import importlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_FILE = "prefect.yaml"


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Serve only this deployment (by name). Repeatable.")
    ] = None,
    prefect_file: Annotated[
        Path | None,
        typer.Option("--prefect-file", help="Deployments file (default: the project's prefect.yaml)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many flow runs at once.")] = None,
) -> None:
    """Serve the deployments of prefect.yaml with their cron schedules, until interrupted (needs a Prefect server)."""
    from streamkeeper.cli import _start_prefect, echo
    from streamkeeper.errors import ConfigError

    path = prefect_file or project_file()
    specs = read_deployments(path, only or [])
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "streamkeeper serve needs a Prefect server, whose scheduler creates the scheduled runs (the "
            "ephemeral API has none): start `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    _start_prefect()
    from prefect import serve as prefect_serve

    deployments = [to_runner_deployment(spec) for spec in specs]
    for spec in specs:
        echo(f"serving {spec['name']:<26} {describe_schedules(spec) or 'ad hoc'}")
    prefect_serve(*deployments, limit=limit, print_starting_message=False)


def project_file() -> Path:
    """``prefect.yaml`` of the working directory, else of the project this package was installed from."""
    here = Path(DEFAULT_FILE)
    if here.is_file():
        return here
    return Path(__file__).resolve().parents[2] / DEFAULT_FILE


def read_deployments(path: Path, only: list[str]) -> list[dict[str, Any]]:
    """The deployments of a prefect.yaml (YAML anchors resolved), optionally only the named ones."""
    import yaml

    from streamkeeper.errors import ConfigError

    try:
        config = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    deployments = (config or {}).get("deployments") or []
    names = [d.get("name") for d in deployments]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise ConfigError(f"--only {unknown[0]}: {path} has no such deployment (it has {', '.join(names)})")
    return [d for d in deployments if not only or d.get("name") in only]


def to_runner_deployment(spec: dict[str, Any]) -> Any:
    """A `RunnerDeployment` from one prefect.yaml deployment: its flow, parameters, schedules and limit."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType

    flow = load_flow(spec["entrypoint"])
    limit = spec.get("concurrency_limit")
    concurrency: Any = limit
    if isinstance(limit, dict):
        concurrency = ConcurrencyLimitConfig(
            limit=limit["limit"],
            collision_strategy=ConcurrencyLimitStrategy(limit.get("collision_strategy", "ENQUEUE")),
        )
    return flow.to_deployment(
        name=spec["name"],
        schedules=[schedule(s) for s in spec.get("schedules") or []],
        parameters=spec.get("parameters") or {},
        concurrency_limit=concurrency,
        description=spec.get("description"),
        tags=spec.get("tags") or [],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def load_flow(entrypoint: str) -> Any:
    """The flow of an entrypoint ``flows/refresh.py:refresh_subscriptions``, imported as a module."""
    file, _, name = entrypoint.partition(":")
    module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def schedule(config: dict[str, Any]) -> Any:
    """A prefect.yaml schedule (cron, interval in seconds, or rrule; timezone, active, parameters)."""
    from prefect.schedules import Cron, Interval, RRule

    common = {
        "timezone": config.get("timezone"),
        "active": config.get("active", True),
        "parameters": config.get("parameters") or {},
    }
    if "cron" in config:
        return Cron(config["cron"], day_or=config.get("day_or", True), **common)
    if "interval" in config:
        return Interval(timedelta(seconds=float(config["interval"])), **common)
    if "rrule" in config:
        return RRule(config["rrule"], **common)
    from streamkeeper.errors import ConfigError

    raise ConfigError(f"a schedule needs cron, interval or rrule: {config}")


def describe_schedules(spec: dict[str, Any]) -> str:
    parts = []
    for s in spec.get("schedules") or []:
        what = s.get("cron") or (f"every {s['interval']} s" if "interval" in s else s.get("rrule", "?"))
        parts.append(
            f"{what} {s.get('timezone', '')}".strip() + ("" if s.get("active", True) else " (inactive)")
        )
    return "; ".join(parts)
