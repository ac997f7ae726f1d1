"""The history store's schema, as numbered migrations applied in order and recorded in `schema_migrations`.

Add a migration by appending to `MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

from typing import NamedTuple


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "initial tables",
        """
        CREATE TABLE subscriptions (
            version_id VARCHAR NOT NULL,
            vendor VARCHAR NOT NULL,
            account VARCHAR NOT NULL,
            subscription_id VARCHAR NOT NULL,
            name VARCHAR,
            kind VARCHAR,
            desired JSON,
            observed JSON,
            etag VARCHAR,
            time_to_live INTEGER,
            expires_at TIMESTAMPTZ,
            previous_expires_at TIMESTAMPTZ,
            status VARCHAR,
            change VARCHAR NOT NULL,
            detail VARCHAR,
            valid_from TIMESTAMPTZ NOT NULL,
            valid_to TIMESTAMPTZ,
            flow_run_id VARCHAR
        );
        CREATE TABLE subscription_snapshots (
            snapshot_id VARCHAR NOT NULL,
            taken_at TIMESTAMPTZ NOT NULL,
            vendor VARCHAR NOT NULL,
            account VARCHAR NOT NULL,
            subscription_id VARCHAR NOT NULL,
            name VARCHAR,
            etag VARCHAR,
            not_modified BOOLEAN NOT NULL,
            body JSON,
            flow_run_id VARCHAR
        );
        CREATE TABLE events (
            vendor VARCHAR NOT NULL,
            stream VARCHAR NOT NULL,
            event_id VARCHAR NOT NULL,
            subscription_id VARCHAR,
            account VARCHAR,
            event_type VARCHAR,
            occurred_at TIMESTAMPTZ,
            received_at TIMESTAMPTZ NOT NULL,
            loaded_at TIMESTAMPTZ NOT NULL,
            payload JSON,
            flow_run_id VARCHAR
        );
        CREATE TABLE onboarding_steps (
            org_key VARCHAR NOT NULL,
            org_id VARCHAR,
            step VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            ids JSON,
            detail VARCHAR,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            duration_ms DOUBLE,
            flow_run_id VARCHAR
        );
        CREATE TABLE api_calls (
            vendor VARCHAR NOT NULL,
            operation VARCHAR NOT NULL,
            method VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            status INTEGER,
            latency_ms DOUBLE,
            attempt INTEGER,
            error VARCHAR,
            called_at TIMESTAMPTZ NOT NULL,
            flow_run_id VARCHAR
        );
        CREATE TABLE token_events (
            vendor VARCHAR NOT NULL,
            account VARCHAR NOT NULL,
            event VARCHAR NOT NULL,
            expires_at TIMESTAMPTZ,
            detail VARCHAR,
            "at" TIMESTAMPTZ NOT NULL,
            flow_run_id VARCHAR
        );
        CREATE TABLE http_cache (
            vendor VARCHAR NOT NULL,
            account VARCHAR NOT NULL,
            resource VARCHAR NOT NULL,
            etag VARCHAR,
            body JSON,
            fetched_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (vendor, account, resource)
        );
        CREATE TABLE cursors (
            source VARCHAR PRIMARY KEY,
            position VARCHAR NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE event_gaps (
            vendor VARCHAR NOT NULL,
            stream VARCHAR NOT NULL,
            subscription_id VARCHAR,
            expected BIGINT,
            received BIGINT,
            detail VARCHAR,
            detected_at TIMESTAMPTZ NOT NULL
        );
        CREATE VIEW current_subscriptions AS
            SELECT * FROM subscriptions WHERE valid_to IS NULL AND change <> 'deleted';
        CREATE VIEW expiring_subscriptions AS
            SELECT vendor, account, subscription_id, name, expires_at,
                   date_diff('second', now(), expires_at) AS seconds_left
            FROM current_subscriptions
            WHERE expires_at IS NOT NULL
            ORDER BY expires_at;
        CREATE VIEW event_counts AS
            SELECT vendor, stream, count(*) AS events,
                   max(received_at) AS last_received_at,
                   avg(date_diff('millisecond', occurred_at, received_at)) / 1000.0 AS avg_lag_seconds
            FROM events GROUP BY vendor, stream;
        """,
    ),
    Migration(
        2,
        "audits, drift findings and the drift view; snapshot body hashes",
        """
        ALTER TABLE subscription_snapshots ADD COLUMN body_hash VARCHAR;
        ALTER TABLE subscription_snapshots ADD COLUMN resource VARCHAR;
        CREATE TABLE audits (
            audit_id VARCHAR NOT NULL,
            vendor VARCHAR NOT NULL,
            account VARCHAR NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ NOT NULL,
            observed INTEGER NOT NULL,
            not_modified INTEGER NOT NULL,
            bodies_stored INTEGER NOT NULL,
            requests INTEGER,
            spec_checked BOOLEAN NOT NULL,
            findings INTEGER NOT NULL,
            error VARCHAR,
            flow_run_id VARCHAR
        );
        CREATE TABLE drift_findings (
            audit_id VARCHAR NOT NULL,
            found_at TIMESTAMPTZ NOT NULL,
            vendor VARCHAR NOT NULL,
            account VARCHAR NOT NULL,
            resource VARCHAR NOT NULL,
            subscription_id VARCHAR,
            name VARCHAR,
            against VARCHAR NOT NULL,
            finding VARCHAR NOT NULL,
            fields JSON,
            detail VARCHAR,
            flow_run_id VARCHAR
        );
        CREATE VIEW drift AS
            SELECT f.vendor, f.account, f.resource, f.subscription_id, f.name, f.against, f.finding,
                   f.fields, f.detail, f.found_at, f.audit_id, f.flow_run_id
            FROM drift_findings AS f
            JOIN (SELECT vendor, account, arg_max(audit_id, finished_at) AS audit_id
                  FROM audits WHERE error IS NULL GROUP BY vendor, account) AS latest
              USING (vendor, account, audit_id);
        CREATE VIEW token_health AS
            SELECT vendor, account,
                   arg_max(event, "at") AS last_event,
                   max("at") AS last_event_at,
                   arg_max(expires_at, "at") AS expires_at,
                   date_diff('second', now(), arg_max(expires_at, "at")) AS seconds_left,
                   max("at") FILTER (WHERE event <> 'failed') AS last_success_at,
                   max("at") FILTER (WHERE event = 'failed') AS last_failure_at,
                   arg_max(detail, "at") AS detail
            FROM token_events GROUP BY vendor, account;
        """,
    ),
    Migration(
        3,
        "rejected_deliveries: acknowledged deliveries (landing files) quarantined by the loader",
        """
        CREATE TABLE rejected_deliveries (
            vendor VARCHAR,
            route VARCHAR,
            delivery_id VARCHAR,
            received_at TIMESTAMPTZ,
            reason VARCHAR NOT NULL,
            landing_path VARCHAR NOT NULL,
            quarantined_at TIMESTAMPTZ NOT NULL,
            flow_run_id VARCHAR
        );
        """,
    ),
    Migration(
        4,
        "who owns each subscription",
        # NULL: the spec (provision-subscriptions); else the flow that made it, e.g. onboard-organization.
        # What another flow owns is neither drift nor deleted by a prune.
        """
        ALTER TABLE subscriptions ADD COLUMN owner VARCHAR;
        """,
    ),
    Migration(
        5,
        "unchanged audits as one snapshot row pointing at the last full one; audit inputs; snapshot_items",
        """
        ALTER TABLE subscription_snapshots ADD COLUMN same_as VARCHAR;
        ALTER TABLE audits ADD COLUMN inputs VARCHAR;
        CREATE VIEW snapshot_items AS
            WITH audited AS (
                SELECT a.audit_id, a.vendor, a.account, a.finished_at,
                       coalesce(p.same_as, a.audit_id) AS full_id
                FROM audits AS a
                LEFT JOIN subscription_snapshots AS p
                  ON p.snapshot_id = a.audit_id AND p.taken_at = a.finished_at AND p.same_as IS NOT NULL
                WHERE a.error IS NULL
            ),
            items AS (
                SELECT snapshot_id, taken_at, vendor, account, coalesce(resource, 'subscription') AS resource,
                       subscription_id, name, etag, body_hash
                FROM subscription_snapshots WHERE same_as IS NULL
            ),
            bodies AS (
                SELECT vendor, account, coalesce(resource, 'subscription') AS resource, subscription_id,
                       taken_at, body
                FROM subscription_snapshots WHERE body IS NOT NULL
            )
            SELECT d.audit_id, d.vendor, d.account, d.finished_at AS audited_at, d.full_id AS snapshot_id,
                   i.resource, i.subscription_id, i.name, i.etag, i.body_hash, b.body
            FROM audited AS d
            JOIN items AS i ON i.snapshot_id = d.full_id
            ASOF LEFT JOIN bodies AS b
              ON b.vendor = i.vendor AND b.account = i.account AND b.resource = i.resource
             AND b.subscription_id = i.subscription_id AND i.taken_at >= b.taken_at;
        """,
    ),
    Migration(
        6,
        "cursors as an append-only log of moves (no update to conflict on a shared store); cursors is its view",
        """
        CREATE TABLE cursor_moves (
            source VARCHAR NOT NULL,
            position VARCHAR NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            move BIGINT NOT NULL
        );
        INSERT INTO cursor_moves SELECT source, position, updated_at, 1 FROM cursors;
        DROP TABLE cursors;
        CREATE VIEW cursors AS
            SELECT source, arg_max(position, move) AS position, arg_max(updated_at, move) AS updated_at
            FROM cursor_moves GROUP BY source;
        """,
    ),
    Migration(
        7,
        "current_subscriptions declared again, with owner",
        # A DuckDB view keeps the columns it had when created: `SELECT *` still returns owner (migration 4),
        # but the embedded file's information_schema did not list it, unlike DuckLake's.
        """
        CREATE OR REPLACE VIEW current_subscriptions AS
            SELECT * FROM subscriptions WHERE valid_to IS NULL AND change <> 'deleted';
        """,
    ),
    Migration(
        8,
        "event_keys: each stored delivery's key as a 128-bit hash and the event's own time, for the dedup",
        # The dedup (HistoryStore.load_events) reads only the keys whose dedup_at lies near the batch's
        # events' own times (DuckDB's zone maps and DuckLake's file statistics prune the rest), so a commit's
        # cost does not grow with the table. k1, k2: md5 of vendor, stream and event_id (see history.KEY_SQL).
        """
        CREATE TABLE event_keys (
            k1 UBIGINT NOT NULL,
            k2 UBIGINT NOT NULL,
            dedup_at TIMESTAMPTZ
        );
        INSERT INTO event_keys
        SELECT md5_number_upper(concat_ws(chr(31), vendor, stream, event_id)),
               md5_number_lower(concat_ws(chr(31), vendor, stream, event_id)),
               min(occurred_at)
        FROM events GROUP BY vendor, stream, event_id
        ORDER BY 3 NULLS FIRST;
        """,
    ),
    Migration(
        9,
        "stream_health: per stream and subscription, is it flowing, how late, gaps, failures (docs/health.md)",
        # stream_resyncs is a placeholder (no rows) until gap_resyncs exists: then
        #   CREATE OR REPLACE VIEW stream_resyncs AS SELECT vendor, stream, subscription_id, <its time> AS resynced_at
        #   FROM gap_resyncs;
        # and stream_health counts them (the macro reads the view when it is called).
        """
        CREATE VIEW stream_resyncs AS
            SELECT CAST(NULL AS VARCHAR) AS vendor, CAST(NULL AS VARCHAR) AS stream,
                   CAST(NULL AS VARCHAR) AS subscription_id, CAST(NULL AS TIMESTAMPTZ) AS resynced_at
            WHERE false;
        CREATE MACRO stream_health_by(as_of, late_after, silent_after) AS TABLE
            WITH clock AS (
                SELECT coalesce(CAST(as_of AS TIMESTAMPTZ), now()) AS now_at,
                       CAST(late_after AS DOUBLE) AS late_s, CAST(silent_after AS DOUBLE) AS silent_s
            ),
            bodies AS (  -- what the vendor last said it holds: the newest audit body, else the applied answer
                SELECT vendor, account, subscription_id, arg_max(body, said_at) AS body
                FROM (
                    SELECT vendor, account, subscription_id, body, taken_at AS said_at FROM subscription_snapshots
                    WHERE body IS NOT NULL AND coalesce(resource, 'subscription') = 'subscription'
                    UNION ALL
                    SELECT vendor, account, subscription_id, observed, valid_from FROM current_subscriptions
                    WHERE observed IS NOT NULL
                )
                GROUP BY ALL
            ),
            subs AS (  -- what delivers events: not Stream's flags and segments, ThingSpace's targets or a
                       -- ThingSpace subscription switched off (disabled)
                SELECT s.vendor, s.account, s.subscription_id, s.name, s.kind, s.status AS held_status,
                       s.detail AS held_detail, s.expires_at, b.body,
                       CASE WHEN s.vendor = 'thingspace' THEN coalesce((b.body ->> 'streamkind'), s.kind)
                            ELSE s.subscription_id END AS key
                FROM current_subscriptions AS s
                LEFT JOIN bodies AS b USING (vendor, account, subscription_id)
                WHERE s.vendor <> 'stream' AND coalesce(s.kind, '') <> 'ts.target'
                  AND NOT (s.vendor = 'thingspace' AND coalesce(b.body ->> 'disabled', 'false') = 'true')
            ),
            seen AS (
                SELECT e.vendor, e.stream, e.subscription_id, e.account, e.occurred_at, e.received_at,
                       CASE WHEN e.vendor = 'thingspace' THEN e.stream ELSE e.subscription_id END AS key,
                       CASE WHEN e.vendor = 'thingspace' THEN e.account END AS ts_account,
                       c.now_at,
                       max(e.received_at) OVER (PARTITION BY e.vendor, e.stream, e.subscription_id,
                                                CASE WHEN e.vendor = 'thingspace' THEN e.account END) AS last_at
                FROM events AS e, clock AS c
                WHERE e.received_at <= c.now_at
            ),
            ev AS (
                SELECT vendor, stream, subscription_id, key, ts_account,
                       arg_max(account, received_at) AS account,
                       max(received_at) AS last_event_at,
                       count(*) FILTER (WHERE received_at > now_at - INTERVAL 1 HOUR) AS events_1h,
                       count(*) FILTER (WHERE received_at > now_at - INTERVAL 24 HOUR) AS events_24h,
                       -- lag over the stream's latest day of events (a silent stream keeps its last lag)
                       quantile_cont(date_diff('millisecond', occurred_at, received_at) / 1000.0, 0.5)
                           FILTER (WHERE received_at > last_at - INTERVAL 24 HOUR) AS lag_p50_s,
                       quantile_cont(date_diff('millisecond', occurred_at, received_at) / 1000.0, 0.95)
                           FILTER (WHERE received_at > last_at - INTERVAL 24 HOUR) AS lag_p95_s
                FROM seen
                GROUP BY vendor, stream, subscription_id, key, ts_account, now_at
            ),
            gaps AS (
                SELECT g.vendor, g.stream, g.subscription_id, count(*) AS gaps,
                       CAST(sum(greatest(g.received - g.expected, 0)) AS BIGINT) AS missed
                FROM event_gaps AS g, clock AS c
                WHERE g.detected_at <= c.now_at AND g.detected_at > c.now_at - INTERVAL 24 HOUR
                GROUP BY ALL
            ),
            resyncs AS (
                SELECT r.vendor, r.stream, r.subscription_id, count(*) AS resyncs
                FROM stream_resyncs AS r, clock AS c
                WHERE r.resynced_at <= c.now_at AND r.resynced_at > c.now_at - INTERVAL 24 HOUR
                GROUP BY ALL
            ),
            quarantine AS (  -- a quarantined delivery did not parse: its stream is unknown, its vendor is not
                SELECT q.vendor, count(*) AS quarantined
                FROM rejected_deliveries AS q, clock AS c
                WHERE q.quarantined_at <= c.now_at AND q.quarantined_at > c.now_at - INTERVAL 24 HOUR
                GROUP BY ALL
            ),
            gone AS (  -- subscriptions deleted or replaced: their old events are history, not a silent stream
                SELECT DISTINCT vendor, subscription_id FROM subscriptions
                EXCEPT SELECT vendor, subscription_id FROM current_subscriptions
            ),
            joined AS (
                SELECT coalesce(s.vendor, e.vendor) AS vendor,
                       coalesce(s.account, e.account) AS connection,
                       coalesce(e.stream, CASE WHEN s.vendor = 'thingspace' THEN s.key END) AS stream,
                       coalesce(s.subscription_id, e.subscription_id) AS subscription_id,
                       s.name, s.held_status, s.held_detail, s.expires_at, s.body, s.vendor IS NOT NULL AS subscribed,
                       e.last_event_at, coalesce(e.events_1h, 0) AS events_1h,
                       coalesce(e.events_24h, 0) AS events_24h, e.lag_p50_s, e.lag_p95_s
                FROM ev AS e
                FULL OUTER JOIN subs AS s
                  ON e.vendor = s.vendor AND e.key = s.key
                 AND (s.vendor <> 'thingspace' OR e.ts_account IS NULL OR e.ts_account = s.account)
            ),
            facts AS (
                SELECT j.*,
                       coalesce(g.gaps, 0) AS gaps, coalesce(g.missed, 0) AS missed_events,
                       coalesce(r.resyncs, 0) AS resyncs, coalesce(q.quarantined, 0) AS quarantined,
                       CASE WHEN j.vendor = 'equinix' THEN (j.body ->> 'status')
                            WHEN j.vendor = 'thingspace' THEN nullif((j.body ->> 'laststreamingstatus'), '')
                       END AS vendor_status,
                       CASE WHEN j.vendor = 'equinix'
                            THEN coalesce(json_array_length(j.body -> 'errors'), 0) END AS vendor_errors,
                       TRY_CAST((j.body ->> 'configurationfailures') AS BIGINT) AS configuration_failures,
                       TRY_CAST((j.body ->> 'networkfailures') AS BIGINT) AS network_failures,
                       TRY_CAST((j.body ->> 'streamfailures') AS BIGINT) AS stream_failures,
                       c.now_at, c.late_s, c.silent_s
                FROM joined AS j
                CROSS JOIN clock AS c
                LEFT JOIN gaps AS g
                  ON g.vendor = j.vendor AND g.stream IS NOT DISTINCT FROM j.stream
                 AND g.subscription_id IS NOT DISTINCT FROM j.subscription_id
                LEFT JOIN resyncs AS r
                  ON r.vendor = j.vendor AND r.stream IS NOT DISTINCT FROM j.stream
                 AND r.subscription_id IS NOT DISTINCT FROM j.subscription_id
                LEFT JOIN quarantine AS q ON q.vendor = j.vendor
                WHERE j.subscribed
                   OR NOT EXISTS (SELECT 1 FROM gone AS x
                                  WHERE x.vendor = j.vendor AND x.subscription_id = j.subscription_id)
            ),
            judged AS (
                SELECT f.*,
                       CASE
                           WHEN f.held_status = 'failed' THEN coalesce(f.held_detail, 'the subscription failed')
                           WHEN f.held_status = 'expired' THEN 'the subscription expired'
                           WHEN f.expires_at IS NOT NULL AND f.expires_at <= f.now_at
                               THEN 'the subscription expired at ' || strftime(f.expires_at, '%Y-%m-%dT%H:%M:%SZ')
                           WHEN f.vendor = 'equinix' AND f.vendor_errors > 0
                               THEN 'Equinix holds it with ' || f.vendor_errors || ' error(s), status '
                                    || coalesce(f.vendor_status, '(none)')
                           WHEN f.vendor = 'equinix' AND upper(f.vendor_status) = 'FAILED'
                               THEN 'Equinix holds it with status FAILED'
                           WHEN f.vendor = 'equinix' AND (f.body ->> 'subscriptionId') IS NOT NULL
                                AND f.vendor_status IS NOT NULL AND upper(f.vendor_status) <> 'OK'
                               THEN 'Equinix holds it with status ' || f.vendor_status
                           WHEN f.vendor = 'thingspace' AND lower(f.vendor_status) LIKE 'fail%'
                               THEN 'ThingSpace says its last delivery failed ('
                                    || coalesce(f.configuration_failures, 0) || ' configuration, '
                                    || coalesce(f.network_failures, 0) || ' network, '
                                    || coalesce(f.stream_failures, 0) || ' stream failures)'
                       END AS failure
                FROM facts AS f
            )
            SELECT vendor, connection, stream, subscription_id, name,
                   CASE
                       WHEN failure IS NOT NULL THEN 'failing'
                       WHEN last_event_at IS NULL THEN 'not-started'
                       WHEN date_diff('millisecond', last_event_at, now_at) / 1000.0 >= silent_s THEN 'silent'
                       WHEN date_diff('millisecond', last_event_at, now_at) / 1000.0 >= late_s
                            OR lag_p95_s > late_s THEN 'late'
                       ELSE 'flowing'
                   END AS status,
                   last_event_at, events_1h, events_24h,
                   round(lag_p50_s, 3) AS lag_p50_s, round(lag_p95_s, 3) AS lag_p95_s,
                   CASE
                       WHEN lag_p50_s IS NOT NULL THEN NULL
                       WHEN last_event_at IS NULL THEN 'no events yet'
                       WHEN vendor = 'dma' THEN 'DMA notifications carry no occurrence time'
                       ELSE 'these events carry no occurrence time'
                   END AS lag_note,
                   gaps, missed_events, resyncs, quarantined, vendor_status, vendor_errors,
                   configuration_failures, network_failures, stream_failures, expires_at, failure
            FROM judged
            ORDER BY CASE status WHEN 'failing' THEN 0 WHEN 'silent' THEN 1 WHEN 'late' THEN 2
                                 WHEN 'not-started' THEN 3 ELSE 4 END,
                     vendor, connection, stream, subscription_id;
        CREATE VIEW stream_health AS SELECT * FROM stream_health_by(NULL, 900, 3600);
        """,
    ),
]

LATEST_VERSION = MIGRATIONS[-1].version
