-- Every stream and subscription: flowing, late, silent, failing or not-started, with lag, gaps and vendor failures (docs/health.md).
-- param: late_after 900 Late when the newest event is this many seconds old, or the 95th-percentile lag exceeds it.
-- param: silent_after 3600 Silent when the newest event is this many seconds old.
-- param: at '' Judge as of this ISO 8601 time (default: now); events received later are not counted.
SELECT *
FROM stream_health_by(CAST(nullif($at, '') AS TIMESTAMPTZ), $late_after, $silent_after);
