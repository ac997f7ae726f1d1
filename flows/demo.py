"""``streamkeeper demo``: the sandbox, blocks that point at it, every flow end to end, and a report.

Not a flow itself: it sets the stage and then runs the flows as a user would.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from blocks.dma import DMACredentials
from flows.refresh import refresh_subscriptions
from streamkeeper.environment import streamkeeper_home
from streamkeeper.sandbox.runner import Sandbox
from streamkeeper.store import HistoryStore

DEMO_DMA_BLOCK = "demo-dma"


def run_demo(echo: Callable[[str], None] = print) -> None:
    """Run the demo, printing progress and a summary read back from DuckDB."""
    store = HistoryStore()
    echo(f"history store: {store.path}")
    # the push receiver is not part of the demo yet: the DMA does not validate consumer URLs here
    with Sandbox.start(
        state_dir=streamkeeper_home() / "sandbox", dma={"validate_consumer_url": False}
    ) as sandbox:
        for vendor, url in sandbox.urls().items():
            echo(f"sandbox {vendor:<11} {url}")

        assert sandbox.tls is not None
        dma_block = DMACredentials(
            base_url=sandbox.urls()["dma"],
            username="provisioner",
            password=SecretStr("provisioner-pass"),
            ca_bundle=sandbox.tls.cert_pem,
        )
        dma_block.save(DEMO_DMA_BLOCK, overwrite=True)
        echo(f"saved block {DEMO_DMA_BLOCK!r} (CA bundle: the sandbox's self-signed certificate)")

        with dma_block.get_client() as client:
            for i, (subject, ttl) in enumerate(
                [("conferences", 600), ("conferences/1", 900), ("conferences/2/participants", 1200)]
            ):
                client.create_subscription(
                    subject,
                    {
                        "consumer_url": "http://127.0.0.1:8099/dma",
                        "time_to_live": ttl,
                        "passback": f"demo-{i + 1}",
                    },
                )
        echo("created 3 DMA subscriptions (time-to-live 600, 900, 1200 s)")

        summary = refresh_subscriptions(
            dma_blocks=[DEMO_DMA_BLOCK], refresh_within_seconds=3600, time_to_live=0
        )
        echo(f"refresh-subscriptions: refreshed {summary.refreshed}, expired {summary.expired}")

    rows = store.query(
        """
        SELECT subscription_id, name, previous_expires_at, expires_at
        FROM subscriptions WHERE vendor = 'dma' AND account = ? AND change = 'refreshed'
        QUALIFY row_number() OVER (PARTITION BY subscription_id ORDER BY valid_from DESC) = 1
        ORDER BY subscription_id
        """,
        [DEMO_DMA_BLOCK],
    )
    echo("")
    echo("DMA subscriptions refreshed (from DuckDB):")
    echo(f"{'subscription':<14}{'name':<10}{'old expiry (UTC)':<22}{'new expiry (UTC)':<22}")
    for row in rows.itertuples():
        echo(
            f"{row.subscription_id:<14}{row.name or '':<10}"
            f"{row.previous_expires_at:%Y-%m-%d %H:%M:%S}   {row.expires_at:%Y-%m-%d %H:%M:%S}"
        )
