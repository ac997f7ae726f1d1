-- What each vendor account held at a time, as its latest successful audit at or before then saw it.
-- An audit that found nothing changed stands on the last full snapshot (snapshot_id), bodies as of then.
-- param: at now The time (ISO 8601, e.g. 2026-11-22T06:00:00Z), or now.
-- param: vendor '' Only this vendor (plt, dma, stream, thingspace, equinix); empty for all.
SELECT vendor, account, resource, subscription_id, name, etag, audited_at, audit_id, snapshot_id, body
FROM snapshot_items
WHERE audit_id IN (
        SELECT arg_max(audit_id, finished_at) FROM audits
        WHERE error IS NULL
          AND finished_at <= CASE WHEN $at = 'now' THEN now() ELSE CAST($at AS TIMESTAMPTZ) END
        GROUP BY vendor, account)
  AND ($vendor = '' OR vendor = $vendor)
ORDER BY vendor, account, resource, subscription_id;
