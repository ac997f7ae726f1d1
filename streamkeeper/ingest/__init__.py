"""Ingestion: every vendor's events into the ``events`` table, each delivery once (no Prefect here).

One module per source, each a bounded drain that commits batches with `HistoryStore.load_events`
(deduplicated by vendor, stream, event_id) and acknowledges the source only after the commit:

- `pubnub_source`: PLT over PubNub (the real SDK), live plus history catch-up, cursors per channel;
- `sqs_source`: SQS queues (delete after commit), `kinesis_source`: Kinesis streams (cursor per shard);
- `equinix_source`: the Equinix pull feed (offset cursor per subscription);
- `landing`: the push receiver's landing files (deleted after commit);
- `normalize`: vendor payloads -> events rows; `base`: the report, the loader, the crash-test hook.
"""

from streamkeeper.ingest.base import IngestError, SourceReport
from streamkeeper.ingest.equinix_source import drain_equinix, pull_subscriptions
from streamkeeper.ingest.kinesis_source import drain_kinesis
from streamkeeper.ingest.landing import landing_dir, load_landing, write_landing_file
from streamkeeper.ingest.pubnub_source import PubNubOptions, PubNubStream, drain_pubnub, plt_streams
from streamkeeper.ingest.sqs_source import drain_sqs

__all__ = [
    "IngestError",
    "PubNubOptions",
    "PubNubStream",
    "SourceReport",
    "drain_equinix",
    "drain_kinesis",
    "drain_pubnub",
    "drain_sqs",
    "landing_dir",
    "load_landing",
    "plt_streams",
    "pull_subscriptions",
    "write_landing_file",
]
