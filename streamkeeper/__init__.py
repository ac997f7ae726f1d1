"""streamkeeper: keep vendor event-stream subscriptions alive, audited and ingested.

The library (this package) never imports Prefect; `blocks/`, `tasks/` and `flows/` wrap it for Prefect,
and `streamkeeper.cli` runs those flows.
"""

__version__ = "0.1.0"
