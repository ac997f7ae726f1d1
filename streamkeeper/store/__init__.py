"""The DuckDB history store: schema and migrations, the single writer, views, reports."""

from streamkeeper.store.history import HistoryStore, default_path
from streamkeeper.store.records import (
    EventGap,
    OnboardingStep,
    RejectedDelivery,
    Snapshot,
    SubscriptionVersion,
    TokenEvent,
)

__all__ = [
    "EventGap",
    "HistoryStore",
    "OnboardingStep",
    "RejectedDelivery",
    "Snapshot",
    "SubscriptionVersion",
    "TokenEvent",
    "default_path",
]
