"""``streamkeeper receive``: the push receiver (DMA notifications, ThingSpace streamrest, Stream webhooks).

It authenticates each sender, writes every accepted delivery durably to the landing area before answering
2xx, and records DMA sequence gaps there too; ``ingest-events`` loads the landing area into DuckDB. No
Prefect here. See docs/receiver.md.

    app = create_app(load_config("receiver.yaml"), landing=Path("data/landing"))
    ReceiverServer(app, port=8099).run()   # uvicorn with the limits on slow and idle clients
"""

from streamkeeper.receiver.app import Receiver, create_app
from streamkeeper.receiver.config import (
    DMAConsumer,
    ReceiverConfig,
    StreamWebhook,
    ThingSpaceTarget,
    config_from_spec,
    load_config,
)
from streamkeeper.receiver.landing import LandingArea, landing_dir, read_records
from streamkeeper.receiver.server import ReceiverServer

__all__ = [
    "DMAConsumer",
    "LandingArea",
    "ReceiverConfig",
    "Receiver",
    "ReceiverServer",
    "StreamWebhook",
    "ThingSpaceTarget",
    "config_from_spec",
    "create_app",
    "landing_dir",
    "load_config",
    "read_records",
]
