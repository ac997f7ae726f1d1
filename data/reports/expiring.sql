-- Live subscriptions that expire within the next N hours (and any already past their expiry), soonest first.
-- param: hours 24 Subscriptions expiring within this many hours.
SELECT vendor, account, subscription_id, name, kind, expires_at,
       round(date_diff('second', now(), expires_at) / 3600.0, 2) AS hours_left,
       change AS last_change, valid_from AS since
FROM current_subscriptions
WHERE expires_at IS NOT NULL
  AND coalesce(status, '') NOT IN ('expired', 'deleted')
  AND date_diff('second', now(), expires_at) <= $hours * 3600
ORDER BY expires_at, vendor, account, subscription_id;
