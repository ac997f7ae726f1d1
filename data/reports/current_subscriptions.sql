-- Current subscriptions per vendor and account, soonest expiry first.
SELECT vendor, account, subscription_id, name, kind, status, expires_at, change AS last_change, valid_from AS since
FROM current_subscriptions
ORDER BY vendor, account, expires_at NULLS LAST, subscription_id;
