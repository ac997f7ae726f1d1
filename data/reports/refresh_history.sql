-- Subscription refreshes, expiries and re-creations, newest first, with the old and new expiry.
-- param: days 7 Only the last this many days.
SELECT valid_from AS at, vendor, account, subscription_id, name, change,
       previous_expires_at AS old_expiry, expires_at AS new_expiry, detail, flow_run_id
FROM subscriptions
WHERE change IN ('refreshed', 'expired', 'recreated')
  AND valid_from >= now() - to_days(CAST($days AS INTEGER))
ORDER BY valid_from DESC, vendor, account, subscription_id;
