-- Vendor tokens per credentials block: health, latest event, expiry, last success and failure.
-- Never a token itself: token_events holds what happened, not the token.
SELECT vendor, account, last_event, last_event_at, expires_at,
       round(seconds_left / 60.0, 1) AS minutes_left,
       last_success_at, last_failure_at,
       CASE
           WHEN last_event = 'failed' THEN 'failing'
           WHEN expires_at IS NOT NULL AND seconds_left <= 0 THEN 'expired'
           ELSE 'ok'
       END AS health,
       detail
FROM token_health
ORDER BY health = 'ok', vendor, account;
