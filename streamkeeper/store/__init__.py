"""The history store: schema and migrations, two backends (an embedded DuckDB file; DuckLake), views, reports."""

from streamkeeper.store.history import HistoryStore, StoreConflict, default_path
from streamkeeper.store.records import (
    EventGap,
    OnboardingStep,
    RejectedDelivery,
    Snapshot,
    SubscriptionVersion,
    TokenEvent,
)
from streamkeeper.store.settings import StoreSettings

__all__ = [
    "EventGap",
    "HistoryStore",
    "OnboardingStep",
    "RejectedDelivery",
    "Snapshot",
    "StoreConflict",
    "StoreSettings",
    "SubscriptionVersion",
    "TokenEvent",
    "default_path",
]
