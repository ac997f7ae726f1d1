-- Vendor API calls per vendor and operation: volume, error rate and latency.
SELECT vendor, operation, count(*) AS calls,
       count(*) FILTER (WHERE status IS NULL OR status >= 400) AS errors,
       round(100.0 * count(*) FILTER (WHERE status IS NULL OR status >= 400) / count(*), 1) AS error_pct,
       round(quantile_cont(latency_ms, 0.5), 1) AS p50_ms,
       round(quantile_cont(latency_ms, 0.95), 1) AS p95_ms
FROM api_calls
GROUP BY vendor, operation
ORDER BY vendor, operation;
