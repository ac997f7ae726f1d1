-- Every refresh, newest first: old and new expiry.
SELECT vendor, account, subscription_id, name, previous_expires_at AS old_expiry, expires_at AS new_expiry,
       valid_from AS refreshed_at, flow_run_id
FROM subscriptions
WHERE change IN ('refreshed', 'expired', 'recreated')
ORDER BY valid_from DESC;
