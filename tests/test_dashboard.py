"""``streamkeeper dashboard``: one self-contained page whose every chart carries the store's data, the refresh
schedule from prefect.yaml, one-line errors for bad arguments, and a page that says so when there is no
data. (Drawn in a real browser: tests/e2e/test_dashboard_browser.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from dashkit import seed

from streamkeeper import cli
from streamkeeper.dashboard import RefreshSchedule, build, refresh_schedule
from streamkeeper.store import HistoryStore, SubscriptionVersion

CHARTS = ["expiries", "events", "lag", "drift", "tokens", "errors"]


class Links(HTMLParser):
    """Every src and href attribute of the page's tags, and its sections' data-points (script text is not
    parsed as tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.scripts_with_src: list[str] = []
        self.points: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "script" and values.get("src"):
            self.scripts_with_src.append(values["src"] or "")
        if tag == "section" and values.get("data-chart"):
            self.points[values["data-chart"] or ""] = int(values.get("data-points") or 0)


def parse(page: str) -> Links:
    links = Links()
    links.feed(page)
    return links


MINUTE = 45


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    db = tmp_path_factory.mktemp("dashboard") / "history.duckdb"
    # a fixed minute of the hour: whether a sub expiring in 30 min has an hourly run before it depends on it
    now = datetime.now(UTC).replace(minute=MINUTE, second=0, microsecond=0)
    return db, seed(HistoryStore(db), now=now)


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> None:
    assert cli.main(argv) != 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_the_page_is_self_contained_and_every_chart_carries_the_stores_data(
    seeded: tuple[Path, datetime], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = seeded
    out = tmp_path / "site" / "dashboard.html"
    assert cli.main(["dashboard", "--out", str(out), "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == f"dashboard: {out} (6 of 6 charts with data)"
    page = out.read_text()
    found = parse(page)
    assert not found.scripts_with_src, found.scripts_with_src
    remote = [link for link in found.links if link.startswith(("http:", "https:", "//"))]
    assert not remote, remote
    assert page.count("plotly.js v") == 1  # the library inline, once
    assert page.count("Plotly.newPlot(") == 6
    assert list(found.points) == CHARTS and all(n > 0 for n in found.points.values()), found.points
    assert "No data" not in page
    assert out.stat().st_mode & 0o777 == 0o644


def test_the_charts_count_what_the_store_holds(seeded: tuple[Path, datetime]) -> None:
    db, now = seeded
    store = HistoryStore(db)
    board = build(store, schedule=refresh_schedule(), now=now)
    charts = {c.key: c for c in board.charts}

    def traces(key: str) -> dict[str, object]:
        figure = charts[key].figure
        assert figure is not None
        return {t.name: t for t in figure.data}  # type: ignore[attr-defined]

    events = traces("events")
    assert set(events) == {"plt/locations", "dma/conferences"}
    total = int(store.query("SELECT count(*) AS n FROM events")["n"][0])
    assert sum(sum(t.y) for t in events.values()) == total  # type: ignore[attr-defined]
    lag = traces("lag")["median"]
    assert list(lag.y) == ["plt/locations", "dma/conferences"]  # type: ignore[attr-defined]  # worst on top
    errors = traces("errors")
    assert max(errors["dma"].y) == 0 and max(errors["equinix"].y) > 0  # type: ignore[attr-defined]
    tokens = traces("tokens")
    assert list(tokens["failed"].y) == ["equinix/eqx"]  # type: ignore[attr-defined]
    drift = traces("drift")
    assert sorted(drift["dma/dma-prod"].y) == [0, 0, 0, 1, 1, 2, 2]  # type: ignore[attr-defined]
    assert list(drift["audit failed"].text) == ["plt/plt-prod: HTTP 503 from PLT"]  # type: ignore[attr-defined]
    assert board.headline["failed audits"] == "1" and board.headline["tokens failing"] == "1 of 2"
    # the project's prefect.yaml: refresh hourly; the subscription that expired an hour ago is the one at risk
    expiries = traces("expiries")
    assert list(expiries["expires before a refresh"].y) == ["dma/dma-prod conf-0"]  # type: ignore[attr-defined]
    assert len(expiries["scheduled refresh run"].x) == 26  # type: ignore[attr-defined]  # hourly, up to 25 h + 1 h


def test_the_refresh_schedule_comes_from_prefect_yaml_and_decides_what_is_at_risk(tmp_path: Path) -> None:
    project = refresh_schedule()
    assert project is not None and (project.cron, project.timezone, project.within_seconds) == (
        "0 * * * *",
        "UTC",
        7200,
    )
    now = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    store = HistoryStore(tmp_path / "h.duckdb")
    store.record_versions(
        [
            SubscriptionVersion(
                vendor="dma",
                account="a",
                subscription_id=name,
                name=name,
                change="created",
                expires_at=now + timedelta(minutes=minutes),
            )  # fmt: skip
            for name, minutes in (("missed", 300), ("caught", 350), ("far", 2170))
        ]
    )
    # every 6 hours, refreshing what expires within the hour: the run at 06:00 is too late for 05:30
    schedule = RefreshSchedule(cron="0 */6 * * *", within_seconds=3600)
    board = build(store, schedule=schedule, now=now)
    figure = board.charts[0].figure
    assert figure is not None
    named = {t.name: t for t in figure.data}  # type: ignore[attr-defined]
    assert list(named["expires before a refresh"].y) == ["dma/a missed"]  # type: ignore[attr-defined]
    assert sorted(named["dma expiry"].y) == ["dma/a caught", "dma/a far"]  # type: ignore[attr-defined]
    ticks = [t.strftime("%H:%M") for t in named["scheduled refresh run"].x]  # type: ignore[attr-defined]
    assert ticks[:3] == ["06:00", "12:00", "18:00"]

    # a run exactly when an expiry comes within reach catches it; every minute, runs beyond the first 500
    # are not drawn but still count: nothing is at risk three days out
    exact = build(store, schedule=RefreshSchedule(cron="0 */6 * * *", within_seconds=1200), now=now).charts[0]
    assert exact.figure is not None
    exact_named = {t.name: t for t in exact.figure.data}  # type: ignore[attr-defined]
    assert list(exact_named["expires before a refresh"].y) == ["dma/a missed", "dma/a far"]  # type: ignore[attr-defined]
    assert "dma/a caught" in list(exact_named["dma expiry"].y)  # type: ignore[attr-defined]  # 06:20 - 20 min
    minutely = build(store, schedule=RefreshSchedule(cron="* * * * *", within_seconds=120), now=now).charts[0]
    assert minutely.figure is not None and "The first 500 scheduled runs are drawn." in minutely.about
    minute_named = {t.name: t for t in minutely.figure.data}  # type: ignore[attr-defined]
    assert "expires before a refresh" not in minute_named
    assert len(minute_named["scheduled refresh run"].x) == 500  # type: ignore[attr-defined]

    # many subscriptions: a row each for the soonest 60, and the chart says so
    store.record_versions(
        [
            SubscriptionVersion(
                vendor="dma",
                account="b",
                subscription_id=f"many-{i}",
                name=f"many-{i:03}",
                change="created",
                expires_at=now + timedelta(minutes=400 + i),
            )
            for i in range(100)
        ]
    )
    crowded = build(store, schedule=schedule, now=now).charts[0]
    assert crowded.figure is not None and "The soonest 60 of 103 are shown." in crowded.about
    rows = {y for t in crowded.figure.data for y in t.y if y is not None}  # type: ignore[attr-defined]
    assert len(rows - {"refresh-subscriptions runs"}) == 60 and "dma/b many-057" in rows
    assert "dma/b many-058" not in rows and "dma/a far" not in rows


def test_bad_arguments_are_one_line_errors(
    seeded: tuple[Path, datetime], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = seeded
    out = str(tmp_path / "d.html")
    one_error(capsys, ["dashboard", "--out", out, "--db", str(db), "--days", "0"], "--days 0", "1 to 90")
    one_error(capsys, ["dashboard", "--out", str(tmp_path), "--db", str(db)], "is a directory")
    missing = tmp_path / "typo" / "history.duckdb"
    one_error(capsys, ["dashboard", "--out", out, "--db", str(missing)], f"no history store at {missing}")
    assert not missing.parent.exists()
    one_error(
        capsys,
        ["dashboard", "--out", out, "--db", str(db), "--deployments", str(tmp_path / "nope.yaml")],
        "deployments file not found",
    )
    bad = tmp_path / "prefect.yaml"
    bad.write_text(
        "deployments:\n  - name: refresh-subscriptions\n    schedules:\n      - cron: '61 * * * *'\n"
    )
    one_error(capsys, ["dashboard", "--out", out, "--db", str(db), "--deployments", str(bad)], "'61 * * * *'")
    assert not Path(out).exists()


def test_an_empty_store_gives_a_page_that_says_there_is_no_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "empty.duckdb"
    HistoryStore(db).query("SELECT 1")  # created and migrated, nothing in it
    out = tmp_path / "d.html"
    assert cli.main(["dashboard", "--out", str(out), "--db", str(db)]) == 0
    assert "(0 of 6 charts with data)" in capsys.readouterr().out
    page = out.read_text()
    assert "No data in the history store yet" in page
    assert page.count('<p class="empty">No data: ') == 6
    assert "plotly.js v" not in page and len(page) < 20_000  # nothing to draw, no library
