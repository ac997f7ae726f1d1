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

    from streamkeeper.vendors.http.redact import PREFECT_LOGGERS, install_log_redaction

    setup_logging()
    install_log_redaction(*PREFECT_LOGGERS)
    for name in PREFECT_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _QuietUserErrors) for f in handler.filters):
                handler.addFilter(_QuietUserErrors())


def _start_prefect() -> None:
    environment.ensure_prefect_database()
    _setup_prefect_logging()


def echo(text: str = "") -> None:
    typer.echo(text)


# -- connect -----------------------------------------------------------------------------------------------
@app.command()
def connect(
    vendor: Annotated[
        str, typer.Argument(help="dma, plt, stream, thingspace or equinix (or store: the history store).")
    ],
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
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec", help="Spec file: refresh its connections; recreate its DMA subscriptions that expired."
        ),
    ] = None,
    dma: Annotated[
        list[str] | None, typer.Option("--dma", help="DMA credentials block name. Repeatable.")
    ] = None,
    stream: Annotated[
        list[str] | None,
        typer.Option("--stream", help="Stream block whose refresh token to rotate. Repeatable."),
    ] = None,
    thingspace: Annotated[
        list[str] | None,
        typer.Option("--thingspace", help="ThingSpace block whose session to renew. Repeatable."),
    ] = None,
    equinix: Annotated[
        list[str] | None, typer.Option("--equinix", help="Equinix block whose token to renew. Repeatable.")
    ] = None,
    within: Annotated[int, typer.Option(help="Refresh what expires within this many seconds.")] = 7200,
    ttl: Annotated[
        int | None, typer.Option("--ttl", help="Time-to-live to set (0 = 26 h); default each one's own.")
    ] = None,
    db: Annotated[Path | None, typer.Option(help="History store file (default $STREAMKEEPER_DB).")] = None,
) -> None:
    """Run refresh-subscriptions: keep DMA subscriptions alive and renew vendor tokens.

    Without --spec or any block, refreshes the DMA block named "dma".
    """
    if ttl is not None and not 0 <= ttl <= 93600:
        raise ConfigError(f"--ttl {ttl}: a DMA time-to-live is 0 (the maximum) or 1..93600 seconds")
    if within < 0:
        raise ConfigError(f"--within {within}: give a number of seconds, 0 or more")
    if spec is not None:
        from streamkeeper.spec import load_spec

        load_spec(spec)  # a spec mistake is one line, before Prefect starts
    if spec is None and not (dma or stream or thingspace or equinix):
        dma = ["dma"]
    _start_prefect()
    from flows.refresh import refresh_subscriptions

    summary = refresh_subscriptions(
        spec_path=str(spec) if spec else None,
        dma_blocks=dma or [],
        stream_blocks=stream or [],
        thingspace_blocks=thingspace or [],
        equinix_blocks=equinix or [],
        refresh_within_seconds=within,
        time_to_live=ttl,
        db_path=str(db) if db else None,
    )
    _print_refresh(summary.outcomes)
    if summary.tokens:
        echo("")
        echo(
            _table(
                ("vendor", "account", "token", "expires", "detail"),
                [(t.vendor, t.account, t.event, _ts(t.expires_at), t.detail or "") for t in summary.tokens],
            )
        )
    echo(
        f"refreshed {summary.refreshed}, expired {summary.expired}, recreated {summary.recreated}, "
        f"failed {summary.failed}; tokens renewed {len(summary.tokens) - summary.tokens_failed}, "
        f"failed {summary.tokens_failed}"
    )


REFRESH_ROWS = 50


def _print_refresh(outcomes: list[Any]) -> None:
    shown = outcomes
    if len(outcomes) > REFRESH_ROWS:  # many: what did not simply refresh, then the first refreshed ones
        shown = [o for o in outcomes if o.outcome != "refreshed"]
        shown += [o for o in outcomes if o.outcome == "refreshed"][: max(0, REFRESH_ROWS - len(shown))]
    rows = [
        (
            o.account,
            o.subscription_id,
            o.name or "",
            o.outcome,
            _ts(o.old_expires_at),
            _ts(o.new_expires_at),
        )
        for o in shown
    ]
    if rows:
        echo(_table(("account", "subscription", "name", "outcome", "old expiry", "new expiry"), rows))
    if len(shown) < len(outcomes):
        echo(f"... {len(outcomes) - len(shown)} more refreshed (streamkeeper report refresh_history)")


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
        int,
        typer.Option(
            help="First port; the emulators take consecutive ports (0: free ones, new at every start)."
        ),
    ] = 0,
    save_blocks: Annotated[
        str | None,
        typer.Option(
            "--save-blocks",
            metavar="PREFIX",
            help="Also save credentials blocks for the emulators: PREFIX-dma ... PREFIX-equinix and the Secret "
            "blocks the example spec names (demo: the names prefect.yaml uses).",
        ),
    ] = None,
) -> None:
    """Run the local vendor emulators until interrupted; print how to connect to them.

    The DMA's CA certificate is kept in $STREAMKEEPER_HOME/sandbox/tls across restarts, so with a fixed
    --port the blocks (and a `prefect deploy` that uses them) keep working after a restart.
    """
    from streamkeeper.sandbox.runner import Sandbox
    from streamkeeper.yamlspec import setting

    with Sandbox.start(base_port=port, state_dir=environment.streamkeeper_home() / "sandbox") as running:
        for vendor, url in running.urls().items():
            echo(f"{vendor:<12} {url}")
        assert running.tls is not None
        echo(f"DMA CA certificate (its ca_bundle, kept across restarts): {running.tls.certfile}")
        echo("credentials the emulators accept, as `streamkeeper connect` commands:")
        name = save_blocks or "sandbox"
        for vendor, fields in running.credentials().items():
            env = " ".join(
                f"STREAMKEEPER_{vendor.upper()}_{c.field.upper()}={c.value}" for c in fields if c.secret
            )
            sets = " ".join(f"--set {c.field}={c.value}" for c in fields if not c.secret)
            echo(f"  {env} streamkeeper connect {vendor} --name {name}-{vendor} {sets}")
        echo(
            "the example spec's ${STREAMKEEPER_RECEIVER_URL}: "
            f"{setting('STREAMKEEPER_RECEIVER_URL')} (run `streamkeeper receive` there)"
        )
        if save_blocks:
            _start_prefect()
            from flows.demo import Credentials

            names = Credentials().save_blocks(running, save_blocks)
            echo(f"saved blocks {', '.join(names)}")
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
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def report(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Report name (a file in data/reports/ without .sql).")],
    format: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    db: Annotated[Path | None, typer.Option(help="History store file.")] = None,
) -> None:
    """Run a SQL report over the history store. Report parameters follow as --name value, e.g.
    `streamkeeper report expiring --hours 6`; `streamkeeper report list` lists the reports."""
    from streamkeeper.reports import available, load_report, parse_options, render, run_report

    if format not in ("table", "csv", "json"):
        raise ConfigError(f"unknown format {format!r}: choose table, csv or json")
    if name == "list":
        for report_name in available():
            found = load_report(report_name)
            params = " ".join(f"[--{p.name.replace('_', '-')} {p.default!r}]" for p in found.params)
            echo(f"{report_name:<22} {found.description}" + (f"  {params}" if params else ""))
        return
    echo(render(run_report(name, db, parse_options(list(ctx.args))), format))


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
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # typer's bundled click: usage errors (exit 2) and the like
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            typer.echo(f"error: {exc.format_message()}", err=True)
        return int(exc.exit_code)
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
