"""``streamkeeper``: the command line. Each job command runs a Prefect flow and ends with a summary.

Exit codes: 0 success; 1 an error (one line on stderr, no traceback for a user mistake); 2 a usage error,
or for ``plan`` "changes pending".
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

from streamkeeper import environment

environment.prepare()  # before anything imports Prefect

import click  # noqa: E402
import typer  # noqa: E402

from streamkeeper.errors import ConfigError, StreamkeeperError  # noqa: E402

app = typer.Typer(
    name="streamkeeper",
    help="Keep vendor event-stream subscriptions alive, audited and ingested (Prefect flows + DuckDB).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _QuietUserErrors(logging.Filter):
    """Console handlers show a user-facing error as its message, without Prefect's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], StreamkeeperError):
            record.exc_info = None
            record.exc_text = None
        return True


def _setup_prefect_logging() -> None:
    from prefect.logging.configuration import setup_logging

    from streamkeeper.vendors.http.redact import RedactingFilter

    setup_logging()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.flows", "prefect.tasks"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _QuietUserErrors) for f in handler.filters):
                handler.addFilter(_QuietUserErrors())
                handler.addFilter(RedactingFilter())


def _start_prefect() -> None:
    environment.ensure_prefect_database()
    _setup_prefect_logging()


def echo(text: str = "") -> None:
    typer.echo(text)


# -- connect -----------------------------------------------------------------------------------------------
@app.command()
def connect(
    vendor: Annotated[str, typer.Argument(help="dma, plt, stream, thingspace or equinix.")],
    name: Annotated[str, typer.Option("--name", help="Block name to create or update.")] = "",
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="A non-secret field, KEY=VALUE (VALUE @file reads a file). Repeatable."),
    ] = None,
) -> None:
    """Create or update a vendor credentials block. Secrets come from the environment or a prompt, never argv.

    A secret field FIELD of vendor VENDOR is read from $STREAMKEEPER_<VENDOR>_<FIELD> (e.g.
    STREAMKEEPER_DMA_PASSWORD), else prompted for without echo.
    """
    from blocks.registry import block_class, build_block_values

    cls = block_class(vendor)
    values = build_block_values(vendor, cls, settings or [], interactive=sys.stdin.isatty())
    _start_prefect()
    block_name = name or vendor
    cls.register_type_and_schema()
    cls(**values).save(block_name, overwrite=True)
    echo(f"saved {cls.get_block_type_name()} block {block_name!r}")


# -- refresh -----------------------------------------------------------------------------------------------
@app.command()
def refresh(
    dma: Annotated[
        list[str] | None, typer.Option("--dma", help="DMA credentials block name. Repeatable.")
    ] = None,
    within: Annotated[int, typer.Option(help="Refresh what expires within this many seconds.")] = 7200,
    ttl: Annotated[
        int | None, typer.Option("--ttl", help="Time-to-live to set (0 = 26 h); default each one's own.")
    ] = None,
) -> None:
    """Run refresh-subscriptions: keep DMA subscriptions alive."""
    if ttl is not None and not 0 <= ttl <= 93600:
        raise ConfigError(f"--ttl {ttl}: a DMA time-to-live is 0 (the maximum) or 1..93600 seconds")
    _start_prefect()
    from flows.refresh import refresh_subscriptions

    summary = refresh_subscriptions(
        dma_blocks=dma or ["dma"], refresh_within_seconds=within, time_to_live=ttl
    )
    _print_refresh(summary.outcomes)
    echo(f"refreshed {summary.refreshed}, expired {summary.expired}, failed {summary.failed}")


def _print_refresh(outcomes: list[Any]) -> None:
    rows = [
        (
            o.account,
            o.subscription_id,
            o.name or "",
            o.outcome,
            _ts(o.old_expires_at),
            _ts(o.new_expires_at),
        )
        for o in outcomes
    ]
    echo(_table(("account", "subscription", "name", "outcome", "old expiry", "new expiry"), rows))


def _ts(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = [tuple(str(c) for c in headers), *[tuple(str(c) for c in r) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- sandbox -----------------------------------------------------------------------------------------------
@app.command()
def sandbox(
    port: Annotated[
        int, typer.Option(help="First port; the emulators take consecutive ports (0: free ones).")
    ] = 0,
) -> None:
    """Run the local vendor emulators until interrupted."""
    from streamkeeper.sandbox.runner import Sandbox

    with Sandbox.start(base_port=port, state_dir=environment.streamkeeper_home() / "sandbox") as running:
        for vendor, url in running.urls().items():
            echo(f"{vendor:<12} {url}")
        echo("sandbox running; Ctrl-C stops it")
        try:
            running.wait()
        except KeyboardInterrupt:
            echo("stopping")


# -- demo --------------------------------------------------------------------------------------------------
@app.command()
def demo() -> None:
    """Start the sandbox and run every flow end to end against it, then print a report."""
    _start_prefect()
    from flows.demo import run_demo

    run_demo(echo)


# -- report ------------------------------------------------------------------------------------------------
@app.command()
def report(
    name: Annotated[str, typer.Argument(help="Report name (a file in data/reports/ without .sql).")],
    format: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    db: Annotated[Path | None, typer.Option(help="History store file.")] = None,
) -> None:
    """Run a SQL report over the history store."""
    from streamkeeper.reports import render, run_report

    if format not in ("table", "csv", "json"):
        raise ConfigError(f"unknown format {format!r}: choose table, csv or json")
    echo(render(run_report(name, db), format))


def _register_commands() -> None:
    import importlib

    from streamkeeper.commands import MODULES

    for name in MODULES:
        try:
            module = importlib.import_module(f"streamkeeper.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"streamkeeper.commands.{name}":
                continue  # not built yet
            raise
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command, turning user-facing errors into one line and an exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="streamkeeper", standalone_mode=False)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except StreamkeeperError as exc:
        from streamkeeper.vendors.http.redact import redact

        typer.echo(f"error: {redact(str(exc))}", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    return int(result) if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    os.environ.setdefault("STREAMKEEPER_CLI", "1")
    run()
