-- Vendor API calls of the last N hours: volume, error rate and latency per vendor and per operation.
-- Operation "(all)" is the vendor's total. An error is a call without an answer or with a status >= 400.
-- param: hours 24 Only calls of the last this many hours.
SELECT vendor, coalesce(operation, '(all)') AS operation, count(*) AS calls,
       count(*) FILTER (WHERE status IS NULL OR status >= 400) AS errors,
       round(100.0 * count(*) FILTER (WHERE status IS NULL OR status >= 400) / count(*), 2) AS error_pct,
       count(*) FILTER (WHERE status = 304) AS not_modified,
       round(quantile_cont(latency_ms, 0.5), 1) AS p50_ms,
       round(quantile_cont(latency_ms, 0.95), 1) AS p95_ms,
       round(max(latency_ms), 1) AS max_ms
FROM api_calls
WHERE called_at >= now() - to_hours(CAST($hours AS BIGINT))
GROUP BY GROUPING SETS ((vendor), (vendor, operation))
ORDER BY vendor, operation IS NOT NULL, operation;
