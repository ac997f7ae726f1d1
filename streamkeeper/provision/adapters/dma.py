"""DMA subscriptions: the stable name travels in ``passback``; only the time-to-live can change in place.

A DMA subscription is created by a POST to its subject resource, keeps its consumer URL, credentials,
``passthru`` and subject for life, and only its time-to-live can be PUT (which also restarts its timer).
Any other difference is a replacement: the old one is deleted first, then the new one created, so that
two subscriptions never carry the same passback (a lost create is found again by its passback). The
password the DMA sends to the consumer is never read back: it is compared with the last applied spec by
its block name only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from streamkeeper.provision.adapters.base import Adapter
from streamkeeper.provision.model import Change, Outcome, Resource, ResourceType
from streamkeeper.spec import DMAConnection, DMASubscriptionSpec
from streamkeeper.store.records import SubscriptionVersion
from streamkeeper.vendors.dma import MAX_TIME_TO_LIVE, DMAClient, Subscription
from streamkeeper.vendors.http import PreconditionFailed, RequestInvalid

_SUBJECT_ROOT = "/api/rest/"


def subject_of(sub: Subscription) -> str | None:
    """``conferences[/{id}[/participants]]`` from the subject resource URL the DMA answers."""
    url = sub.subject_resource_url
    if not url:
        return None
    return url.split(_SUBJECT_ROOT, 1)[-1].strip("/") if _SUBJECT_ROOT in url else url.rstrip("/")


class DMAAdapter(Adapter):
    vendor = "dma"
    mutable: ClassVar[dict[ResourceType, frozenset[str] | None]] = {
        "subscription": frozenset({"time_to_live"}),
        "target": None,
    }

    connection: DMAConnection
    client: DMAClient

    def __init__(self, connection: DMAConnection, client: DMAClient, **kwargs: Any) -> None:
        super().__init__(connection, client, **kwargs)
        self._specs = {s.name: s for s in connection.subscriptions}

    # -- planning ------------------------------------------------------------------------------------------
    def read(self) -> list[Resource]:
        listing = self.client.list_subscriptions()
        assert listing is not None  # no ETag sent
        return [self._actual(s) for s in listing.subscriptions]

    def _actual(self, sub: Subscription) -> Resource:
        return Resource(
            vendor=self.vendor,
            account=self.account,
            name=sub.passback,
            id=sub.subscription_identifier,
            key=sub.passback or f"id:{sub.subscription_identifier}",
            kind=subject_of(sub),
            fields={
                "subject": subject_of(sub),
                "consumer_url": sub.consumer_url,
                "time_to_live": sub.time_to_live,
                "send_update_notifications": sub.send_update_notifications,
                "passthru": sub.passthru,
                "username": sub.username,
            },
            observed=sub.model_dump(mode="json"),
            etag=sub.entity_tag,
        )

    def desired(self, actual: list[Resource]) -> tuple[list[Resource], list[str]]:
        out = []
        for spec in self.connection.subscriptions:
            creds = spec.notification_credentials
            out.append(
                Resource(
                    vendor=self.vendor,
                    account=self.account,
                    name=spec.name,
                    key=spec.name,
                    kind=spec.subject_path,
                    fields={
                        "subject": spec.subject_path,
                        "consumer_url": spec.consumer_url,
                        # 0 asks for the maximum, and the DMA then holds the maximum
                        "time_to_live": spec.time_to_live or MAX_TIME_TO_LIVE,
                        "send_update_notifications": spec.send_update_notifications,
                        "passthru": spec.passthru,
                        "username": creds.username if creds else None,
                    },
                    ignore=["send_update_notifications"] if spec.send_update_notifications is None else [],
                    write_only={"password_block": creds.password_block} if creds else {},
                    desired=spec.desired(),
                )
            )
        return out, []

    # -- applying ------------------------------------------------------------------------------------------
    def execute(self, change: Change) -> Outcome:
        adopted = self.adopted(change)
        if change.action == "adopt":
            return self.outcome(change, "adopted", *adopted)
        if change.action == "create":
            return self.outcome(change, "created", self._create(change))
        if change.action == "update":
            return self.outcome(change, "updated", *adopted, self._update(change))
        if change.action == "delete":
            return self.outcome(change, "deleted", self._delete(change))
        # replace: delete first (a passback is carried by one subscription at a time), then create
        gone = self._delete(change)
        try:
            created = self._create(change)
        except Exception as exc:
            return self.outcome(change, "failed", gone, detail=f"deleted, then the create failed: {exc}")
        return self.outcome(change, "replaced", gone, created, subscription_id=created.subscription_id)

    def _create(self, change: Change) -> SubscriptionVersion:
        spec: DMASubscriptionSpec = self._specs[change.name or ""]
        ttl = spec.time_to_live
        if not 0 <= ttl <= MAX_TIME_TO_LIVE:  # checked before anything is sent
            raise RequestInvalid(self.vendor, "create_subscription", f"time_to_live {ttl} outside 0..93600")
        creds = spec.notification_credentials
        body: dict[str, Any] = {
            "consumer_url": spec.consumer_url,
            "time_to_live": ttl,
            "send_update_notifications": spec.send_update_notifications,
            "passback": spec.name,
            "passthru": spec.passthru,
        }
        if creds is not None:
            body["username"] = creds.username
            body["password"] = self.secret(creds.password_block, "password")
        sub = self.client.create_subscription(spec.subject_path, body)
        return self._row("created", change, sub)

    def _update(self, change: Change) -> SubscriptionVersion:
        actual = change.actual
        assert actual is not None and actual.id is not None and change.desired is not None
        ttl = int(change.desired.fields["time_to_live"])
        try:
            etag = self.client.update_time_to_live(actual.id, ttl, actual.etag or "")
        except PreconditionFailed:
            # changed since the plan read it (a refresh run): take the current ETag and try once more
            fresh = self.client.get_subscription(actual.id)
            assert fresh is not None
            etag = self.client.update_time_to_live(actual.id, ttl, fresh.entity_tag or "")
        observed = dict(actual.observed or {})
        expires = datetime.now(UTC) + timedelta(seconds=ttl)
        observed.update(time_to_live=ttl, entity_tag=etag, calculated_expiration_date=expires.isoformat())
        return self.version(
            "updated", change, actual.id, observed, etag=etag, time_to_live=ttl, expires_at=expires
        )

    def _delete(self, change: Change) -> SubscriptionVersion:
        actual = change.actual
        assert actual is not None and actual.id is not None
        self.client.delete_subscription(actual.id, missing_ok=True)
        return self.version("deleted", change, actual.id, actual.observed, kind=actual.kind)

    def _row(self, kind: Any, change: Change, sub: Subscription) -> SubscriptionVersion:
        return self.version(
            kind,
            change,
            sub.subscription_identifier,
            sub.model_dump(mode="json"),
            kind=subject_of(sub),
            etag=sub.entity_tag,
            time_to_live=sub.time_to_live,
            expires_at=sub.calculated_expiration_date,
        )


__all__ = ["DMAAdapter", "subject_of"]
