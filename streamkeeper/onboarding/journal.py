"""What each onboarding step did: a record per step, a row in ``onboarding_steps``, and the run's report.

    journal = Journal(org_key="luigis-001", store=HistoryStore(path))
    with journal.step("organization") as step:
        ...                       # step.created / step.existing / step.needs_human / step.ids
    markdown = journal.markdown()

Every step gets a row, whether it succeeded or not. A step that changed something at Stream, failed,
or waits for a human is written at once (with any rows still pending), so nothing half-done goes
unrecorded: a failed step's row says what it had done before it failed. Rows of steps that found
everything done already are batched until the next such write or `Journal.flush` (the end of the run),
so a re-run that changes nothing costs one write. Rows hold ids and names only, never a secret
(tokens, codes and links stay out of `ids`, `detail` and the report).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from streamkeeper.errors import StoreError, StreamkeeperError
from streamkeeper.store import HistoryStore, OnboardingStep
from streamkeeper.store.records import utcnow
from streamkeeper.vendors.http import VendorError, redact

StepStatus = Literal["done", "skipped", "waiting", "failed"]


class OnboardingError(StreamkeeperError):
    """An onboarding step failed. The message starts with ``step <name>:``.

    Attributes:
        step: the step that failed.
        transient: whether trying the step again later may succeed (the vendor was unreachable, 429, 5xx).
    """

    def __init__(self, step: str, message: str, transient: bool = False) -> None:
        self.step = step
        self.transient = transient
        super().__init__(f"step {step}: {message}")


class StepRecord(BaseModel):
    """What one step did; `status` is set when it ends."""

    step: str
    status: StepStatus = "skipped"
    created: list[str] = Field(default_factory=list, description="What this run created or changed.")
    existing: list[str] = Field(default_factory=list, description="What was already there (skipped).")
    needs_human: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    resolves: list[str] = Field(
        default_factory=list, description="Earlier steps whose request for a human this step settled."
    )
    ids: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    duration_ms: float | None = None

    def made(self, what: str) -> None:
        self.created.append(what)

    def found(self, what: str) -> None:
        self.existing.append(what)

    def detail(self) -> str | None:
        parts = []
        if self.error:
            parts.append(self.error)
        if self.created:
            parts.append("created: " + ", ".join(self.created))
        if self.existing:
            parts.append("already there: " + ", ".join(self.existing))
        if self.needs_human:
            parts.append("needs a human: " + "; ".join(self.needs_human))
        if self.notes:
            parts.append("; ".join(self.notes))
        return redact(" | ".join(parts)) if parts else None


class Journal:
    """The steps of one onboarding run, written to the history store as they end.

    Args:
        org_key: the organisation's provider id (known before the organisation exists).
        store: where the rows go; None keeps them in memory only.
    """

    def __init__(self, org_key: str, store: HistoryStore | None = None) -> None:
        self.org_key = org_key
        self.store = store
        self.org_id: str | None = None
        self.records: list[StepRecord] = []
        self._pending: list[OnboardingStep] = []

    @contextmanager
    def step(self, name: str) -> Iterator[StepRecord]:
        """Run a step: the record ends ``done`` if it created anything (or the step says so), else
        ``skipped``; ``failed`` on error.

        A vendor or store error leaves as an `OnboardingError` naming the step (the original is its cause).
        """
        record = StepRecord(step=name)
        started = time.perf_counter()
        try:
            yield record
        except BaseException as exc:
            error = as_step_error(name, exc)
            record.status = "failed"
            record.error = str(error) if error is not None else f"{type(exc).__name__}"
            self._end(record, started)
            if error is not None and error is not exc:
                raise error from exc
            raise
        if record.created:
            record.status = "done"
        self._end(record, started)

    def waiting(self, name: str, needs_human: str, ids: dict[str, Any]) -> StepRecord:
        """Record that a step waits for a human (an OAuth code)."""
        record = StepRecord(step=name, status="waiting", needs_human=[needs_human], ids=ids)
        self._end(record, time.perf_counter())
        return record

    def _end(self, record: StepRecord, started: float) -> None:
        record.finished_at = utcnow()
        record.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        self.records.append(record)
        self._pending.append(
            OnboardingStep(
                org_key=self.org_key,
                org_id=record.ids.get("org_id") or self.org_id,
                step=record.step,
                status=record.status,
                ids=record.ids or None,
                detail=record.detail(),
                started_at=record.started_at,
                finished_at=record.finished_at,
                duration_ms=record.duration_ms,
            )
        )
        if record.created or record.status in ("failed", "waiting"):
            self.flush()

    def flush(self) -> None:
        """Write the rows not written yet, in one batch."""
        if self.store is not None and self._pending:
            self.store.record_onboarding_steps(self._pending)
        self._pending = []

    # -- the run's report ----------------------------------------------------------------------------------
    def created(self) -> list[str]:
        return [f"{r.step}: {c}" for r in self.records for c in r.created]

    def skipped(self) -> list[str]:
        return [f"{r.step}: {c}" for r in self.records for c in r.existing]

    def needs_human(self) -> list[str]:
        """What still needs a human: the latest word of each step, unless a later step settled it."""
        latest: dict[str, StepRecord] = {}
        for record in self.records:
            latest[record.step] = record
            if record.status != "failed":
                for settled in record.resolves:
                    latest.pop(settled, None)
        return [f"{r.step}: {n}" for r in latest.values() for n in r.needs_human]

    def failed(self) -> StepRecord | None:
        """The last step whose latest record failed (a code rejected and then accepted is no failure)."""
        return next((r for r in reversed(self.latest()) if r.status == "failed"), None)

    def latest(self) -> list[StepRecord]:
        """Each step's latest record, in the order the steps first ran (a step asked for a code again, or
        waiting and then done, shows once, as it stands)."""
        return list({r.step: r for r in self.records}.values())  # a later record replaces, in place

    def markdown(self, title: str | None = None) -> str:
        """The run's report as it stands: each step's latest status, what was created, what was already
        done, what needs a human (no stale "waiting" row once the step went on)."""
        out = [f"# {title or 'Onboarding ' + self.org_key}", ""]
        if self.org_id:
            out += [f"Stream organisation `{self.org_id}` (provider id `{self.org_key}`).", ""]
        failed = self.failed()
        if failed is not None:
            out += [f"**Failed:** {_md(failed.error or failed.step)}", ""]
        out += ["| step | status | created | already done | notes | ms |", "|---|---|---|---|---|---|"]
        for r in self.latest():
            notes = [*r.notes, *(f"needs a human: {n}" for n in r.needs_human)]
            if r.error:
                notes.insert(0, r.error)
            out.append(
                f"| {r.step} | {r.status} | {_md(', '.join(r.created)) or '-'} | "
                f"{_md(', '.join(r.existing)) or '-'} | {_md('; '.join(notes)) or '-'} | "
                f"{r.duration_ms or 0:.0f} |"
            )
        sections: list[tuple[str, list[str]]] = [
            ("Created in this run", self.created()),
            ("Skipped (already done)", self.skipped()),
            ("Needs a human", self.needs_human()),
        ]
        for heading, items in sections:
            out += ["", f"## {heading}", ""]
            out += [f"- {_md(item)}" for item in items] or ["- nothing"]
        return redact("\n".join(out)) + "\n"


def as_step_error(step: str, exc: BaseException) -> OnboardingError | None:
    """The `OnboardingError` for an exception raised inside a step (None: not ours to name)."""
    if isinstance(exc, OnboardingError):
        return exc
    if isinstance(exc, VendorError):
        return OnboardingError(step, redact(str(exc)), transient=exc.transient)
    if isinstance(exc, StoreError):
        return OnboardingError(step, str(exc), transient=True)
    if isinstance(exc, StreamkeeperError):
        return OnboardingError(step, str(exc))
    return None


def issued_sso_users(store: HistoryStore, org_key: str) -> set[str]:
    """Emails that were given an SSO link for this organisation by an earlier run (from its rows)."""
    frame = store.query(
        """
        SELECT DISTINCT unnest(from_json(json_extract(ids, '$.issued'), '["VARCHAR"]')) AS email
        FROM onboarding_steps
        WHERE org_key = ? AND step = 'sso-links' AND json_extract(ids, '$.issued') IS NOT NULL
        """,
        [org_key],
    )
    return set(frame["email"].dropna())


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


__all__ = ["Journal", "OnboardingError", "StepRecord", "StepStatus", "as_step_error", "issued_sso_users"]
