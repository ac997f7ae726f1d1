"""``streamkeeper receive``: run the push receiver (a long-running ASGI service, not a flow).

Secrets come from the config file (``${ENV_VAR}`` references), never from the command line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command()(receive)


def receive(
    config: Annotated[Path, typer.Option("--config", help="Receiver config YAML (senders and credentials).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8099,
    landing: Annotated[
        str | None,
        typer.Option(
            help="Landing directory or s3://bucket/prefix/ (default: the config's, $STREAMKEEPER_LANDING, data/landing)."
        ),
    ] = None,
    certfile: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM).")] = None,
    keyfile: Annotated[Path | None, typer.Option(help="Private key of --certfile (PEM).")] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option(help="Ask senders for a client certificate from this CA (PEM): Equinix webhooks' mTLS."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the push receiver: DMA notifications, ThingSpace streamrest deliveries, Stream and Equinix webhooks.

    Each accepted delivery is written durably to the landing area before the 2xx; `ingest` loads it.
    """
    from streamkeeper.errors import ConfigError
    from streamkeeper.receiver import ReceiverServer, create_app, load_config
    from streamkeeper.vendors.http.redact import RedactingFilter

    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"--log-level {log_level!r}: choose debug, info, warning or error")
    if (certfile is None) != (keyfile is None):
        raise ConfigError("--certfile and --keyfile go together")
    if client_ca is not None and certfile is None:
        raise ConfigError("--client-ca needs --certfile and --keyfile (mutual TLS is TLS)")
    settings = load_config(config)
    asgi = create_app(settings, landing=landing)
    receiver = asgi.state.receiver
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    scheme = "https" if certfile else "http"
    routes = [
        *(f"/dma/{n}" for n in settings.dma),
        *(f"/thingspace/{n}" for n in settings.thingspace),
        *(f"/stream/{n}" for n in settings.stream),
        *(f"/equinix/{n}" for n in settings.equinix),
    ]
    try:
        try:
            server = ReceiverServer(
                asgi,
                host=host,
                port=port,
                certfile=certfile,
                keyfile=keyfile,
                log_level=log_level,
                client_ca=client_ca,
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        typer.echo(f"receiver on {scheme}://{host}:{server.port}: {', '.join(routes)}")
        area = receiver.landing  # a directory by its absolute path, an S3 prefix as given
        typer.echo(f"landing area: {area.location if area.storage else area.root.resolve()}")
        server.run()  # idle connections close after idle_timeout_seconds (30 s): senders keep them between bursts
    finally:
        receiver.close()
