"""Command-line commands beyond the core ones in `streamkeeper.cli`, one module per job.

Each module defines ``register(app: typer.Typer) -> None`` and is listed in `MODULES`. Like `cli`, these
modules may import Prefect, but only inside the command functions (so ``--help`` stays fast).
"""

MODULES = ("onboard", "provision", "audit", "ingest", "receive", "serve", "export", "dashboard")
