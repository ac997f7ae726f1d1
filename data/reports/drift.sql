-- Drift found by each connection's latest audit, against the spec and against the previous snapshot.
-- Against the spec: missing, extra, changed, expired, invalid; against the previous snapshot: appeared,
-- disappeared, modified, expired.
SELECT d.vendor, d.account, d.resource, d.name, d.subscription_id, d.against, d.finding,
       coalesce(d.detail, CAST(d.fields AS VARCHAR)) AS detail, d.found_at
FROM drift AS d
ORDER BY d.vendor, d.account, d.against DESC, d.finding, d.name NULLS LAST, d.subscription_id;
