-- Current subscriptions per vendor and account (the latest version of each live one), soonest expiry first.
-- param: vendor '' Only this vendor (plt, dma, stream, thingspace, equinix); empty for all.
SELECT vendor, account, subscription_id, name, kind, status, expires_at,
       change AS last_change, valid_from AS since
FROM current_subscriptions
WHERE ($vendor = '' OR vendor = $vendor)
  AND coalesce(status, '') NOT IN ('expired', 'deleted')
ORDER BY vendor, account, expires_at NULLS LAST, subscription_id;
