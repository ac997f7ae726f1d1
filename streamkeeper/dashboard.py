"""The dashboard: one self-contained HTML page of charts over the history store (``streamkeeper dashboard``).

Six charts, each drawn by plotly (plotly.js is inlined once, in the first chart, so the page opens with no
network): subscription expiries against the refresh schedule, events per hour per stream, delivery lag per
stream, drift findings per audit, token events and API error rates per vendor. A chart with nothing to show
says so instead. The store is only read (one read-only connection, like a report); the refresh schedule is
``refresh-subscriptions``' cron in prefect.yaml.
"""

from __future__ import annotations

import html
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import pandas as pd
import plotly.graph_objects as go
import yaml
from cronsim import CronSim, CronSimError
from pydantic import BaseModel

from streamkeeper.errors import ConfigError
from streamkeeper.store import HistoryStore

REFRESH_DEPLOYMENT = "refresh-subscriptions"
DEFAULT_DAYS = 7
MAX_DAYS = 90
MOST_STREAMS = 20
"""Streams drawn one by one in the events chart; the rest are summed into one line."""
MOST_SUBSCRIPTIONS = 60
"""Subscriptions drawn in the expiries chart (a row each), the soonest to expire."""
MOST_TICKS = 500
"""Refresh runs drawn at most (an every-minute schedule over a day would be 1,440 markers)."""
CONFIG = {"displaylogo": False, "responsive": True}
TOKEN_COLOURS = {
    "failed": "#d62728",
    "issued": "#2ca02c",
    "refreshed": "#1f77b4",
    "rotated": "#17becf",
    "renewed": "#9467bd",
}
"""A failure red, every kind of renewal a colour of its own that is not."""


class RefreshSchedule(BaseModel):
    """When refresh-subscriptions runs (its cron), and how far ahead of an expiry a run refreshes."""

    cron: str
    timezone: str = "UTC"
    within_seconds: int = 7200
    source: str = "prefect.yaml"

    def ticks(self, start: datetime, end: datetime, most: int = MOST_TICKS) -> list[datetime]:
        """The runs due from `start` to `end` (UTC), at most `most` of them."""
        out: list[datetime] = []
        for tick in CronSim(self.cron, start.astimezone(ZoneInfo(self.timezone))):
            if tick > end or len(out) >= most:
                break
            out.append(tick.astimezone(UTC))
        return out


def default_deployments_file() -> Path:
    """The project's prefect.yaml (beside the package), else the working directory's."""
    here = Path(__file__).resolve().parent.parent / "prefect.yaml"
    return here if here.is_file() else Path("prefect.yaml")


def refresh_schedule(path: Path | None = None) -> RefreshSchedule | None:
    """refresh-subscriptions' first cron schedule in `path` (default: `default_deployments_file`).

    None when the default file is missing or has no such schedule; a file that was named but is missing, or
    a cron or time zone that does not parse, is a `ConfigError`.
    """
    named = path is not None
    file = path or default_deployments_file()
    if not file.is_file():
        if named:
            raise ConfigError(f"deployments file not found: {file}")
        return None
    try:
        doc = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    for deployment in doc.get("deployments") or []:
        if not isinstance(deployment, dict) or deployment.get("name") != REFRESH_DEPLOYMENT:
            continue
        crons = [s for s in deployment.get("schedules") or [] if isinstance(s, dict) and s.get("cron")]
        if not crons:
            return None
        within = (deployment.get("parameters") or {}).get("refresh_within_seconds", 7200)
        schedule = RefreshSchedule(
            cron=str(crons[0]["cron"]),
            timezone=str(crons[0].get("timezone") or "UTC"),
            within_seconds=int(within),
            source=str(file),
        )
        try:
            CronSim(schedule.cron, datetime.now(ZoneInfo(schedule.timezone)))
        except CronSimError as exc:
            raise ConfigError(f"{file}: {REFRESH_DEPLOYMENT} cron {schedule.cron!r}: {exc}") from None
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"{file}: {REFRESH_DEPLOYMENT} timezone {schedule.timezone!r} is unknown"
            ) from None
        return schedule
    return None


@dataclass
class Chart:
    """One chart: its figure, or None and why there is nothing to draw."""

    key: str
    title: str
    about: str
    figure: go.Figure | None = None
    empty: str = ""

    @property
    def points(self) -> int:
        if self.figure is None:
            return 0
        return sum(len(t.x) for t in self.figure.data if getattr(t, "x", None) is not None)  # type: ignore[attr-defined]


@dataclass
class Dashboard:
    """The charts and the headline figures, as of `now`, over the last `days` days."""

    now: datetime
    days: int
    location: str
    schedule: RefreshSchedule | None
    charts: list[Chart] = field(default_factory=list)
    headline: dict[str, str] = field(default_factory=dict)

    @property
    def drawn(self) -> int:
        return sum(1 for c in self.charts if c.figure is not None)


def build(
    store: HistoryStore,
    *,
    days: int = DEFAULT_DAYS,
    schedule: RefreshSchedule | None = None,
    now: datetime | None = None,
) -> Dashboard:
    """Read the store once and make the charts."""
    if not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"--days {days}: give 1 to {MAX_DAYS}")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    since = now - timedelta(days=days)
    with store.reader() as con:
        frames = {name: _frame(con, sql, since) for name, sql in QUERIES.items()}
    board = Dashboard(now=now, days=days, location=store.location, schedule=schedule)
    board.charts = [
        expiries_chart(frames["expiries"], schedule, now),
        events_chart(frames["events"], days),
        lag_chart(frames["lag"], days),
        drift_chart(frames["drift"], days),
        tokens_chart(frames["tokens"], days),
        errors_chart(frames["errors"], days),
    ]
    for chart in board.charts:
        if chart.key in TIME_COLUMNS:
            _time_axis(chart, frames[chart.key][TIME_COLUMNS[chart.key]], since, now)
    board.headline = headline(frames, now)
    return board


TIME_COLUMNS = {"events": "hour", "drift": "finished_at", "tokens": "at", "errors": "hour"}
"""The charts over time, and the column of each one's query that is its x axis."""


def _time_axis(chart: Chart, times: pd.Series, since: datetime, now: datetime) -> None:
    """The chart's time axis from an hour before its first point (at most the window's start) to now (or
    its last point, when a vendor's clock runs ahead): plotly's own range would be a millisecond wide when
    everything happened in one hour."""
    if chart.figure is None or times.empty:
        return
    start = max(since, times.min().to_pydatetime() - timedelta(hours=1))
    end = max(now, times.max().to_pydatetime())
    pad = (end - start) * 0.03
    chart.figure.update_xaxes(range=[start - pad, end + pad])


QUERIES = {
    "expiries": """
        SELECT vendor, account, subscription_id, coalesce(name, subscription_id) AS name, expires_at
        FROM current_subscriptions WHERE expires_at IS NOT NULL ORDER BY expires_at""",
    "events": """
        SELECT vendor || '/' || stream AS stream, date_trunc('hour', received_at) AS hour, count(*) AS events
        FROM events WHERE received_at >= $since GROUP BY ALL ORDER BY hour""",
    "lag": """
        SELECT vendor || '/' || stream AS stream, count(*) AS events,
               quantile_cont(lag, 0.5) AS p50, quantile_cont(lag, 0.95) AS p95, max(lag) AS max
        FROM (SELECT vendor, stream, date_diff('millisecond', occurred_at, received_at) / 1000.0 AS lag
              FROM events WHERE occurred_at IS NOT NULL AND received_at >= $since)
        GROUP BY ALL ORDER BY p95 DESC""",
    "drift": """
        SELECT vendor || '/' || account AS connection, finished_at, findings, error
        FROM audits WHERE finished_at >= $since ORDER BY finished_at""",
    "tokens": """
        SELECT vendor || '/' || account AS token, event, "at", expires_at, detail
        FROM token_events WHERE "at" >= $since ORDER BY "at" """,
    "errors": """
        SELECT vendor, date_trunc('hour', called_at) AS hour, count(*) AS calls,
               count(*) FILTER (WHERE status IS NULL OR status >= 400) AS errors
        FROM api_calls WHERE called_at >= $since GROUP BY ALL ORDER BY hour""",
}
"""One query per chart; ``$since`` is the window's start. An error is a call with no answer or a status >= 400,
as in the ``api_errors`` report."""


def _frame(con: duckdb.DuckDBPyConnection, sql: str, since: datetime) -> pd.DataFrame:
    params = {"since": since} if "$since" in sql else {}
    frame = con.execute(sql, params).df()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert(UTC)
    return frame


# -- the charts ----------------------------------------------------------------------------------------------
def _layout(figure: go.Figure, y_title: str, height: int = 380) -> go.Figure:
    figure.update_layout(
        height=height,
        margin={"l": 60, "r": 20, "t": 20, "b": 40},
        yaxis_title=y_title,
        legend={"orientation": "h", "y": -0.15},
        template="plotly_white",
        hovermode="closest",
    )
    return figure


def expiries_chart(frame: pd.DataFrame, schedule: RefreshSchedule | None, now: datetime) -> Chart:
    about = (
        "When each live subscription expires, and when refresh-subscriptions runs"
        + (f" (cron {schedule.cron} {schedule.timezone}, from {schedule.source})" if schedule else "")
        + ". A run refreshes what expires within refresh_within_seconds"
        + (f" ({schedule.within_seconds} s)" if schedule else "")
        + " of it: the bar before each expiry. A red cross is an expiry no scheduled run reaches in time."
    )
    chart = Chart("expiries", "Subscription expiries against the refresh schedule", about)
    if frame.empty:
        chart.empty = "No live subscription with an expiry (provision-subscriptions records them)."
        return chart
    if len(frame) > MOST_SUBSCRIPTIONS:
        chart.about += f" The soonest {MOST_SUBSCRIPTIONS} of {len(frame)} are shown."
        frame = frame.head(MOST_SUBSCRIPTIONS)
    frame = frame.assign(label=frame["vendor"] + "/" + frame["account"] + " " + frame["name"].astype(str))
    figure = go.Figure()
    end = max(frame["expires_at"].max().to_pydatetime(), now) + timedelta(hours=1)
    ticks = schedule.ticks(now, end, most=MOST_TICKS + 1) if schedule else []
    if schedule is not None:
        window = timedelta(seconds=schedule.within_seconds)
        xs: list[Any] = []
        ys: list[Any] = []
        for row in frame.itertuples():
            xs += [row.expires_at - window, row.expires_at, None]
            ys += [row.label, row.label, None]
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name="refresh window",
                line={"width": 8, "color": "#c6dbef"},
                hoverinfo="skip",
            )
        )
    at_risk = [_missed(e.to_pydatetime(), schedule, now) for e in frame["expires_at"]]
    frame = frame.assign(at_risk=at_risk)
    for vendor, rows in frame[~frame["at_risk"]].groupby("vendor", sort=True):
        figure.add_trace(
            go.Scatter(
                x=rows["expires_at"],
                y=rows["label"],
                mode="markers",
                name=f"{vendor} expiry",
                marker={"size": 9},
                customdata=rows[["subscription_id"]],
                hovertemplate="%{y}<br>id %{customdata[0]}<br>expires %{x}<extra></extra>",
            )
        )
    risky = frame[frame["at_risk"]]
    if not risky.empty:
        figure.add_trace(
            go.Scatter(
                x=risky["expires_at"],
                y=risky["label"],
                mode="markers",
                name="expires before a refresh",
                marker={"size": 12, "symbol": "x", "color": "#d62728"},
            )
        )
    if len(ticks) > MOST_TICKS:
        chart.about += f" The first {MOST_TICKS} scheduled runs are drawn."
    if ticks:
        drawn = ticks[:MOST_TICKS]
        figure.add_trace(
            go.Scatter(
                x=drawn,
                y=["refresh-subscriptions runs"] * len(drawn),
                mode="markers",
                name="scheduled refresh run",
                marker={"symbol": "line-ns-open", "size": 14, "color": "#444"},
            )
        )
    figure.add_vline(x=now, line_dash="dot", line_color="#888")
    chart.figure = _layout(figure, "", height=max(320, 26 * (len(frame) + 2)))
    return chart


def _missed(expires: datetime, schedule: RefreshSchedule | None, now: datetime) -> bool:
    """True when it expired, or when no scheduled run falls between the moment `expires` comes within the
    runs' reach (refresh_within_seconds before it) and the expiry itself."""
    if schedule is None or expires <= now:
        return expires <= now
    reach = max(now, expires - timedelta(seconds=schedule.within_seconds))
    # CronSim yields the runs after its start: a run exactly at `reach` counts
    first = next(
        CronSim(schedule.cron, (reach - timedelta(seconds=1)).astimezone(ZoneInfo(schedule.timezone)))
    )
    return first.astimezone(UTC) > expires


def events_chart(frame: pd.DataFrame, days: int) -> Chart:
    chart = Chart(
        "events",
        f"Events per hour per stream, last {days} days",
        "Events loaded per vendor stream, by the hour received.",
    )
    if frame.empty:
        chart.empty = f"No event received in the last {days} days (ingest-events loads them)."
        return chart
    totals = frame.groupby("stream")["events"].sum().sort_values(ascending=False)
    shown = list(totals.index[:MOST_STREAMS])
    rest = frame[~frame["stream"].isin(shown)]
    figure = go.Figure()
    for stream in shown:
        rows = frame[frame["stream"] == stream]
        figure.add_trace(go.Scatter(x=rows["hour"], y=rows["events"], mode="lines+markers", name=stream))
    if not rest.empty:
        summed = rest.groupby("hour", as_index=False)["events"].sum()
        name = f"{rest['stream'].nunique()} other streams"
        figure.add_trace(go.Scatter(x=summed["hour"], y=summed["events"], mode="lines+markers", name=name))
    chart.figure = _layout(figure, "events / hour")
    return chart


def lag_chart(frame: pd.DataFrame, days: int) -> Chart:
    chart = Chart(
        "lag",
        f"Delivery lag per stream, last {days} days",
        "Seconds from when the vendor says an event occurred to when it was received (events that carry "
        "an occurrence time): median and 95th percentile. Below zero: the vendor's clock runs ahead of ours.",
    )
    if frame.empty:
        chart.empty = f"No event with an occurrence time in the last {days} days."
        return chart
    frame = frame.head(MOST_STREAMS * 2).iloc[::-1]
    figure = go.Figure()
    for column, name in (("p50", "median"), ("p95", "95th percentile")):
        figure.add_trace(
            go.Bar(
                x=frame[column],
                y=frame["stream"],
                orientation="h",
                name=name,
                customdata=frame[["events"]],
                hovertemplate="%{y}: %{x:.2f} s (%{customdata[0]} events)<extra>" + name + "</extra>",
            )
        )
    figure.update_layout(barmode="group", xaxis_title="seconds")
    chart.figure = _layout(figure, "", height=max(320, 40 * len(frame) + 80))
    return chart


def drift_chart(frame: pd.DataFrame, days: int) -> Chart:
    chart = Chart(
        "drift",
        f"Drift findings per audit, last {days} days",
        "Findings of each audit-subscriptions run per connection (against the spec and the previous snapshot); "
        "a red cross is an audit that failed.",
    )
    if frame.empty:
        chart.empty = f"No audit in the last {days} days (audit-subscriptions records them)."
        return chart
    figure = go.Figure()
    good = frame[frame["error"].isna()]
    for connection, rows in good.groupby("connection", sort=True):
        figure.add_trace(
            go.Scatter(x=rows["finished_at"], y=rows["findings"], mode="lines+markers", name=connection)
        )
    failed = frame[frame["error"].notna()]
    if not failed.empty:
        figure.add_trace(
            go.Scatter(
                x=failed["finished_at"],
                y=[0] * len(failed),
                mode="markers",
                name="audit failed",
                marker={"symbol": "x", "size": 11, "color": "#d62728"},
                text=failed["connection"] + ": " + failed["error"].astype(str).str.slice(0, 120),
                hovertemplate="%{text}<extra></extra>",
            )
        )
    chart.figure = _layout(figure, "findings")
    return chart


def tokens_chart(frame: pd.DataFrame, days: int) -> Chart:
    chart = Chart(
        "tokens",
        f"Token health, last {days} days",
        "Each token lifecycle event per credentials block (never the token): renewals in colour by kind, "
        "failures as red crosses; the hover shows the expiry the renewal gave.",
    )
    if frame.empty:
        chart.empty = f"No token event in the last {days} days (refresh-subscriptions renews tokens)."
        return chart
    figure = go.Figure()
    for event, rows in frame.groupby("event", sort=True):
        failed = event == "failed"
        expires = rows["expires_at"].map(
            lambda v: "" if pd.isna(v) else f"<br>expires {v:%Y-%m-%d %H:%M} UTC"
        )
        detail = rows["detail"].fillna("").astype(str).str.slice(0, 120)
        figure.add_trace(
            go.Scatter(
                x=rows["at"],
                y=rows["token"],
                mode="markers",
                name=str(event),
                marker={
                    "size": 11 if failed else 9,
                    "symbol": "x" if failed else "circle",
                    "color": TOKEN_COLOURS.get(str(event), "#7f7f7f"),
                },
                text=str(event) + expires + "<br>" + detail,
                hovertemplate="%{y}: %{text}<extra></extra>",
            )
        )
    chart.figure = _layout(figure, "", height=max(320, 30 * frame["token"].nunique() + 120))
    return chart


def errors_chart(frame: pd.DataFrame, days: int) -> Chart:
    chart = Chart(
        "errors",
        f"API error rate per vendor, last {days} days",
        "Share of vendor calls per hour with no answer or a status of 400 or more (as the api_errors report).",
    )
    if frame.empty:
        chart.empty = f"No vendor API call in the last {days} days."
        return chart
    figure = go.Figure()
    for vendor, rows in frame.groupby("vendor", sort=True):
        rate = 100.0 * rows["errors"] / rows["calls"]
        figure.add_trace(
            go.Scatter(
                x=rows["hour"],
                y=rate,
                mode="lines+markers",
                name=str(vendor),
                customdata=rows[["errors", "calls"]],
                hovertemplate="%{y:.1f}% (%{customdata[0]} of %{customdata[1]} calls)<extra>"
                + str(vendor)
                + "</extra>",
            )
        )
    figure.update_yaxes(rangemode="tozero")
    chart.figure = _layout(figure, "% of calls failed")
    return chart


def headline(frames: dict[str, pd.DataFrame], now: datetime) -> dict[str, str]:
    """The figures at the top of the page (and in the flows' dashboard artifact)."""
    expiries, events, lag = frames["expiries"], frames["events"], frames["lag"]
    drift, tokens, errors = frames["drift"], frames["tokens"], frames["errors"]
    out = {"live subscriptions with an expiry": str(len(expiries))}
    if not expiries.empty:
        soonest = (expiries["expires_at"].min().to_pydatetime() - now).total_seconds() / 3600
        out["soonest expiry"] = f"in {soonest:.1f} h" if soonest >= 0 else f"{-soonest:.1f} h ago"
    out["events"] = f"{int(events['events'].sum())} in {events['stream'].nunique()} streams"
    if not lag.empty:
        worst = lag.iloc[0]
        out["worst p95 lag"] = f"{worst['p95']:.1f} s ({worst['stream']})"
    if not drift.empty:
        latest = drift.sort_values("finished_at").groupby("connection").tail(1)
        out["drift findings (latest audits)"] = str(int(latest.loc[latest["error"].isna(), "findings"].sum()))
        out["failed audits"] = str(int(drift["error"].notna().sum()))
    if not tokens.empty:
        last = tokens.sort_values("at").groupby("token").tail(1)
        out["tokens failing"] = f"{int((last['event'] == 'failed').sum())} of {len(last)}"
    if not errors.empty:
        calls, failed = int(errors["calls"].sum()), int(errors["errors"].sum())
        out["API error rate"] = f"{100.0 * failed / calls:.1f}% of {calls} calls"
    return out


# -- the page ------------------------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0; } .meta { color: #666; margin-top: 4px; }
table.headline { border-collapse: collapse; margin: 16px 0; }
table.headline td { padding: 3px 12px 3px 0; } table.headline td:first-child { color: #666; }
section.chart { border-top: 1px solid #ddd; padding-top: 8px; margin-top: 20px; }
section.chart h2 { font-size: 1.15em; margin: 4px 0; } p.about { color: #555; margin: 4px 0 8px; }
p.empty { color: #8a6d3b; background: #fcf8e3; padding: 12px; }
"""


def render(board: Dashboard) -> str:
    """The page: headline figures, then each chart (plotly.js inline in the first one drawn)."""
    parts: list[str] = []
    inline = True
    for chart in board.charts:
        body: str
        if chart.figure is None:
            body = f'<p class="empty">No data: {html.escape(chart.empty)}</p>'
        else:
            body = chart.figure.to_html(
                full_html=False, include_plotlyjs=inline, div_id=f"chart-{chart.key}", config=CONFIG
            )
            inline = False
        parts.append(
            f'<section class="chart" id="{chart.key}" data-chart="{chart.key}" data-points="{chart.points}">'
            f'<h2>{html.escape(chart.title)}</h2><p class="about">{html.escape(chart.about)}</p>{body}</section>'
        )
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in board.headline.items()
    )
    nothing = "" if board.drawn else '<p class="empty">No data in the history store yet.</p>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>streamkeeper dashboard</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>streamkeeper dashboard</h1>"
        f'<p class="meta">{html.escape(board.location)} · as of {board.now:%Y-%m-%d %H:%M} UTC · '
        f"last {board.days} days · {board.drawn} of {len(board.charts)} charts with data</p>"
        f'{nothing}<table class="headline">{rows}</table>{"".join(parts)}</body></html>\n'
    )


def write(board: Dashboard, out: Path) -> Path:
    """Write the page to `out` (its folder made when missing), whole or not at all; return its full path."""
    out = out.expanduser()
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory: give a file name, e.g. {out / 'dashboard.html'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render(board))
        os.chmod(tmp, 0o644)  # a page to open and share, not a secret (mkstemp makes it 0600)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out.resolve()


def write_dashboard(
    out: Path | str,
    store: HistoryStore,
    *,
    days: int = DEFAULT_DAYS,
    deployments: Path | None = None,
    now: datetime | None = None,
) -> tuple[Path, Dashboard]:
    """Build the dashboard of `store` and write it to `out`; the page's full path and what it shows."""
    board = build(store, days=days, schedule=refresh_schedule(deployments), now=now)
    return write(board, Path(out)), board


__all__ = [
    "Chart",
    "Dashboard",
    "RefreshSchedule",
    "build",
    "refresh_schedule",
    "render",
    "write",
    "write_dashboard",
]
