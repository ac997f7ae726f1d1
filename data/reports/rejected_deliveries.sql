-- Acknowledged deliveries that could not be loaded: quarantined (moved aside) with the reason, newest first.
-- param: days 7 Quarantined within this many days.
SELECT vendor, route, delivery_id, received_at, quarantined_at, reason, landing_path
FROM rejected_deliveries
WHERE quarantined_at >= now() - to_days(CAST($days AS INTEGER))
ORDER BY quarantined_at DESC, landing_path
