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
]

LATEST_VERSION = MIGRATIONS[-1].version
