"""Event identity across id formats: an event stored under the id it had before never lands again.

An event's identity in ``events`` is (vendor, stream, event_id), and it must include where the delivery
came from (a ThingSpace target, a PLT partner's channel), else one sender's event suppresses another's with
the same id. Where that made an id format change, the row built in the new format carries the id its event
had in the old one as ``previous_event_id`` (a key of the row dict, not a column). Before a batch is
loaded, `drop_stored_previous` drops each row whose previous id is stored already, with the same vendor,
stream and account and received within `PREVIOUS_WINDOW` (a sender's retry, a crashed run's rows read
again), or carried by another row of the batch (an old-format landing file beside its retry in the new
format). Older rows are not looked at: a re-delivery comes within hours, and the window keeps the check to
the recent part of the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from streamkeeper.ingest.normalize import Row

PREVIOUS_WINDOW = timedelta(days=7)  # ours: re-deliveries come within hours


def drop_stored_previous(con: Any, rows: Sequence[Row]) -> tuple[list[Row], int]:
    """`rows` without those stored before under their ``previous_event_id``; and how many were dropped.

    `con` is the batch's writer connection (its transaction), so no other writer comes between the check
    and the load.
    """
    marked = [(i, r) for i, r in enumerate(rows) if r.get("previous_event_id")]
    if not marked:
        return list(rows), 0
    in_batch = {(r["vendor"], r["stream"], r["account"], r["event_id"]) for r in rows}
    dropped = {
        i
        for i, r in marked
        if (r["vendor"], r["stream"], r["account"], r["previous_event_id"]) in in_batch
        and r["previous_event_id"] != r["event_id"]
    }
    lookup = pd.DataFrame(
        {
            "i": [i for i, _ in marked],
            "vendor": [r["vendor"] for _, r in marked],
            "stream": [r["stream"] for _, r in marked],
            "account": [r["account"] for _, r in marked],
            "previous_event_id": [r["previous_event_id"] for _, r in marked],
        }
    )
    con.register("previous_ids", lookup)
    try:
        found = con.execute(
            """
            SELECT DISTINCT p.i FROM previous_ids AS p
            JOIN events AS e
              ON e.vendor = p.vendor AND e.stream = p.stream AND e.event_id = p.previous_event_id
             AND e.account IS NOT DISTINCT FROM p.account
            WHERE e.received_at >= ?
            """,
            [datetime.now(UTC) - PREVIOUS_WINDOW],
        ).fetchall()
    finally:
        con.unregister("previous_ids")
    dropped.update(int(i) for (i,) in found)
    return [r for i, r in enumerate(rows) if i not in dropped], len(dropped)


__all__ = ["PREVIOUS_WINDOW", "drop_stored_previous"]
