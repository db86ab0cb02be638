//! The on-disk layout: tables, indexes, the SQL views of PRODUCT §7, and connection settings.

use rusqlite::Connection;

use crate::StoreError;

/// Bumped with every change to the layout; a store written by a newer version is refused.
pub const SCHEMA_VERSION: i64 = 10;

const SCHEMA_V1: &str = r#"
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,          -- ingest order
    event_id       TEXT NOT NULL,
    source         TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    correlation_id TEXT,
    causation_id   TEXT,
    subject        TEXT,                         -- aggregate id
    time           TEXT NOT NULL,                -- RFC 3339 UTC, fixed µs precision: sorts as time
    topic          TEXT,
    journey        TEXT,
    journey_key    TEXT,
    received_at    TEXT NOT NULL,
    redeliveries   INTEGER NOT NULL DEFAULT 0,
    envelope       TEXT NOT NULL                 -- canonical CloudEvents JSON
);
-- The CloudEvents identity; also serves lookups by event id.
CREATE UNIQUE INDEX events_identity ON events(event_id, source);
CREATE INDEX events_correlation ON events(correlation_id, time);
CREATE INDEX events_causation ON events(causation_id);
CREATE INDEX events_subject ON events(subject, time);
CREATE INDEX events_type_time ON events(event_type, time);
CREATE INDEX events_time ON events(time);

CREATE TABLE dlq (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT,
    event_type      TEXT,
    correlation_id  TEXT,
    source_service  TEXT,
    consumer        TEXT NOT NULL,               -- 'causeway' for events refused at ingest
    source_topic    TEXT,
    error_type      TEXT NOT NULL,
    error_message   TEXT NOT NULL,
    failed_at       TEXT NOT NULL,
    last_failed_at  TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 1,
    status          TEXT NOT NULL DEFAULT 'pending',
    content_type    TEXT,
    original_event  TEXT NOT NULL                -- the input as received
);
CREATE INDEX dlq_correlation ON dlq(correlation_id);
CREATE INDEX dlq_failed_at ON dlq(failed_at);
CREATE INDEX dlq_status ON dlq(status, failed_at);

CREATE VIEW event_lineage AS
    SELECT event_id, event_type, correlation_id, causation_id, source AS source_service,
           time AS timestamp, subject AS aggregate_id, journey, journey_key, topic
    FROM events;

CREATE VIEW dlq_events AS
    SELECT id, correlation_id, source_service, consumer, source_topic, error_type, error_message,
           failed_at, status, original_event
    FROM dlq;
"#;

/// Version 2: findings (PRODUCT §5), raised at ingest by the model's contracts and later by the
/// journey engine.
const SCHEMA_V2: &str = r#"
CREATE TABLE finding_records (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL,
    journey        TEXT,
    journey_key    TEXT,
    correlation_id TEXT,
    event_id       TEXT,
    expected       TEXT,
    detected_at    TEXT NOT NULL,
    resolved_at    TEXT,
    detail         TEXT NOT NULL,
    owner          TEXT
);
CREATE INDEX findings_kind ON finding_records(kind, detected_at);
CREATE INDEX findings_event ON finding_records(event_id);
CREATE INDEX findings_correlation ON finding_records(correlation_id);
CREATE INDEX findings_open ON finding_records(resolved_at, detected_at);

CREATE VIEW findings AS
    SELECT id, kind, journey, journey_key, correlation_id, event_id, detected_at, resolved_at, detail,
           owner, expected
    FROM finding_records;
"#;

/// Version 3: what the journey engine derives (PRODUCT §3, §5, §7). Redeliveries get a row in the
/// ingest order (sharing `seq` with `events`), so replaying the log replays them too; each event's
/// journey membership; findings raised by the engine keyed by the engine's own finding id, so a
/// rebuild after a restart updates rows in place instead of adding new ones.
const SCHEMA_V3: &str = r#"
CREATE TABLE redeliveries (
    seq          INTEGER PRIMARY KEY,            -- in the ingest order shared with events.seq
    event_seq    INTEGER NOT NULL,               -- the event delivered again
    received_at  TEXT NOT NULL
);
CREATE TABLE event_journeys (
    seq          INTEGER PRIMARY KEY,            -- events.seq
    journey      TEXT NOT NULL,
    journey_key  TEXT NOT NULL
);
ALTER TABLE finding_records ADD COLUMN engine_id INTEGER;  -- the journey engine's id; NULL at ingest
CREATE UNIQUE INDEX findings_engine ON finding_records(engine_id);
CREATE INDEX findings_journey ON finding_records(journey, journey_key);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

DROP VIEW event_lineage;
CREATE VIEW event_lineage AS
    SELECT e.event_id, e.event_type, e.correlation_id, e.causation_id, e.source AS source_service,
           e.time AS timestamp, e.subject AS aggregate_id, j.journey, j.journey_key, e.topic
    FROM events e LEFT JOIN event_journeys j ON j.seq = e.seq;
"#;

/// Version 4: the dead-letter explorer and replay (PRODUCT §6). Consumers' failure reports share
/// the `dlq` table with events refused at ingest. Triggers keep the tallies the summary reads
/// (pending records by source topic, error type and consumer; every record by status), the
/// per-minute flow into and out of `pending`, and a trigram index of error messages for free-text
/// search, so none of these scans the records. Every replay attempt is audited.
const SCHEMA_V4: &str = r#"
ALTER TABLE dlq ADD COLUMN stack TEXT;               -- the consumer's stack trace, if given
ALTER TABLE dlq ADD COLUMN context TEXT;             -- JSON object the consumer attached, if any
ALTER TABLE dlq ADD COLUMN last_error TEXT;          -- the latest replay failure
ALTER TABLE dlq ADD COLUMN status_reason TEXT;       -- why it was discarded or resolved
ALTER TABLE dlq ADD COLUMN status_changed_at TEXT;
ALTER TABLE dlq ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;  -- successful replays
CREATE INDEX dlq_event ON dlq(event_id);
CREATE INDEX dlq_consumer ON dlq(consumer);
CREATE INDEX dlq_source_topic ON dlq(source_topic);
CREATE INDEX dlq_error_type ON dlq(error_type);
CREATE INDEX dlq_status_id ON dlq(status);
CREATE INDEX dlq_last_failed_at ON dlq(last_failed_at);

CREATE TABLE dlq_replays (
    id           INTEGER PRIMARY KEY,
    dlq_id       INTEGER NOT NULL,
    at           TEXT NOT NULL,
    actor        TEXT NOT NULL,
    target       TEXT,
    dry_run      INTEGER NOT NULL,
    forced       INTEGER NOT NULL,
    outcome      TEXT NOT NULL,                  -- sent | failed | dry_run
    http_status  INTEGER,
    error        TEXT
);
CREATE INDEX dlq_replays_record ON dlq_replays(dlq_id);

DROP VIEW dlq_events;
CREATE VIEW dlq_events AS
    SELECT id, correlation_id, source_service, consumer, source_topic, error_type, error_message,
           failed_at, status, original_event, event_id, event_type, last_failed_at, attempts, last_error,
           status_reason, replays
    FROM dlq;

-- 'status' counts every record by status; the other dimensions count pending records.
CREATE TABLE dlq_tally (
    dimension TEXT NOT NULL,
    value     TEXT NOT NULL,
    records   INTEGER NOT NULL,
    PRIMARY KEY (dimension, value)
) WITHOUT ROWID;
-- Transitions into pending (inflow) and out of it (outflow) per minute since the epoch.
CREATE TABLE dlq_flow (
    minute  INTEGER PRIMARY KEY,
    inflow  INTEGER NOT NULL DEFAULT 0,
    outflow INTEGER NOT NULL DEFAULT 0
);
CREATE VIRTUAL TABLE dlq_text USING fts5(error_message, content='dlq', content_rowid='id', tokenize='trigram');

INSERT INTO dlq_tally SELECT 'status', status, count(*) FROM dlq GROUP BY status;
INSERT INTO dlq_tally SELECT 'source_topic', coalesce(source_topic, ''), count(*) FROM dlq WHERE status = 'pending' GROUP BY 2
    UNION ALL SELECT 'error_type', error_type, count(*) FROM dlq WHERE status = 'pending' GROUP BY 2
    UNION ALL SELECT 'consumer', consumer, count(*) FROM dlq WHERE status = 'pending' GROUP BY 2;
-- Earlier records count as inflow when still pending: when the others left pending is unknown.
INSERT INTO dlq_flow (minute, inflow) SELECT unixepoch(failed_at) / 60, count(*) FROM dlq WHERE status = 'pending' GROUP BY 1;
INSERT INTO dlq_text(dlq_text) VALUES ('rebuild');

CREATE TRIGGER dlq_added AFTER INSERT ON dlq BEGIN
    INSERT INTO dlq_tally VALUES ('status', NEW.status, 1)
        ON CONFLICT DO UPDATE SET records = records + 1;
    INSERT INTO dlq_tally
        SELECT column1, column2, 1 FROM (VALUES ('source_topic', coalesce(NEW.source_topic, '')),
                                               ('error_type', NEW.error_type), ('consumer', NEW.consumer))
        WHERE NEW.status = 'pending'
        ON CONFLICT DO UPDATE SET records = records + 1;
    INSERT INTO dlq_flow (minute, inflow) SELECT unixepoch(NEW.last_failed_at) / 60, 1 WHERE NEW.status = 'pending'
        ON CONFLICT DO UPDATE SET inflow = inflow + 1;
    INSERT INTO dlq_text (rowid, error_message) VALUES (NEW.id, NEW.error_message);
END;

CREATE TRIGGER dlq_changed AFTER UPDATE OF status, source_topic, error_type, consumer ON dlq
WHEN OLD.status IS NOT NEW.status OR OLD.source_topic IS NOT NEW.source_topic
  OR OLD.error_type IS NOT NEW.error_type OR OLD.consumer IS NOT NEW.consumer
BEGIN
    UPDATE dlq_tally SET records = records - 1 WHERE dimension = 'status' AND value = OLD.status;
    INSERT INTO dlq_tally VALUES ('status', NEW.status, 1)
        ON CONFLICT DO UPDATE SET records = records + 1;
    UPDATE dlq_tally SET records = records - 1
    WHERE OLD.status = 'pending'
      AND ((dimension = 'source_topic' AND value = coalesce(OLD.source_topic, ''))
        OR (dimension = 'error_type' AND value = OLD.error_type)
        OR (dimension = 'consumer' AND value = OLD.consumer));
    INSERT INTO dlq_tally
        SELECT column1, column2, 1 FROM (VALUES ('source_topic', coalesce(NEW.source_topic, '')),
                                               ('error_type', NEW.error_type), ('consumer', NEW.consumer))
        WHERE NEW.status = 'pending'
        ON CONFLICT DO UPDATE SET records = records + 1;
    INSERT INTO dlq_flow (minute, inflow) SELECT unixepoch(NEW.last_failed_at) / 60, 1
    WHERE NEW.status = 'pending' AND OLD.status IS NOT 'pending'
        ON CONFLICT DO UPDATE SET inflow = inflow + 1;
    INSERT INTO dlq_flow (minute, outflow) SELECT unixepoch(NEW.status_changed_at) / 60, 1
    WHERE OLD.status = 'pending' AND NEW.status IS NOT 'pending'
        ON CONFLICT DO UPDATE SET outflow = outflow + 1;
END;

CREATE TRIGGER dlq_message_changed AFTER UPDATE OF error_message ON dlq
WHEN OLD.error_message IS NOT NEW.error_message
BEGIN
    INSERT INTO dlq_text (dlq_text, rowid, error_message) VALUES ('delete', OLD.id, OLD.error_message);
    INSERT INTO dlq_text (rowid, error_message) VALUES (NEW.id, NEW.error_message);
END;
"#;

/// Version 5: the rule (policy or invariant) a finding is about. Dropping the engine's recorded
/// position makes it write every finding it derives again on its next start — in place, under the
/// same ids, as a rebuild does — so findings stored before this version get their rule too.
const SCHEMA_V5: &str = r#"
ALTER TABLE finding_records ADD COLUMN rule TEXT;   -- NULL for findings raised at ingest
DELETE FROM meta WHERE key = 'journey_position';
"#;

/// Version 6: where a broker delivered an event or a refused message (PRODUCT §2, §7): the
/// partition and offset beside the topic, and the broker's timestamp of the message; a refused
/// message's partition and offset on its DLQ record, indexed so a redelivery after a crash finds
/// the record it already made instead of making another.
const SCHEMA_V6: &str = r#"
ALTER TABLE events ADD COLUMN partition INTEGER;     -- Kafka partition; NULL otherwise
ALTER TABLE events ADD COLUMN "offset" INTEGER;      -- Kafka offset, NATS stream sequence
ALTER TABLE events ADD COLUMN message_time TEXT;     -- the broker's timestamp of the message
ALTER TABLE dlq ADD COLUMN source_partition INTEGER;
ALTER TABLE dlq ADD COLUMN source_offset INTEGER;
CREATE INDEX dlq_origin ON dlq(source_topic, source_offset) WHERE source_offset IS NOT NULL;

DROP VIEW event_lineage;
CREATE VIEW event_lineage AS
    SELECT e.event_id, e.event_type, e.correlation_id, e.causation_id, e.source AS source_service,
           e.time AS timestamp, e.subject AS aggregate_id, j.journey, j.journey_key, e.topic,
           e.partition, e."offset"
    FROM events e LEFT JOIN event_journeys j ON j.seq = e.seq;

DROP VIEW dlq_events;
CREATE VIEW dlq_events AS
    SELECT id, correlation_id, source_service, consumer, source_topic, error_type, error_message,
           failed_at, status, original_event, event_id, event_type, last_failed_at, attempts, last_error,
           status_reason, replays, source_partition, source_offset
    FROM dlq;
"#;

/// Version 7: Kafka dead-letter topics and replay to Kafka (PRODUCT §6, §10). A record keeps the
/// key and headers of the Kafka message its original came in, so that a replay re-publishes it as
/// it was; each dead-letter topic message read is remembered by its topic, partition and offset,
/// so that one delivered again after a crash neither adds a record nor counts an attempt; a
/// replay to a topic audits the partition and offset the broker wrote it at.
const SCHEMA_V7: &str = r#"
ALTER TABLE dlq ADD COLUMN original_key BLOB;        -- the Kafka message's key, as received
ALTER TABLE dlq ADD COLUMN original_headers TEXT;    -- its headers: JSON [[name, base64 value or null], …]
CREATE TABLE dlq_messages (
    topic      TEXT NOT NULL,                    -- the dead-letter topic
    partition  INTEGER NOT NULL,
    "offset"   INTEGER NOT NULL,
    dlq_id     INTEGER NOT NULL,                 -- the record the message made or repeated
    PRIMARY KEY (topic, partition, "offset")
) WITHOUT ROWID;
ALTER TABLE dlq_replays ADD COLUMN partition INTEGER;   -- replay to Kafka: where it was written
ALTER TABLE dlq_replays ADD COLUMN "offset" INTEGER;
"#;

/// Version 8: sealed history (`docs/operations.md`, "The store"). New events go to `events_hot`;
/// runs of the oldest are sealed into compressed segment files, registered in `segments`. `events`
/// is a virtual table (`sealed.rs`) over both, bounded by the `segments` rows of the reader's own
/// snapshot, so a seal or a retention pass never shows a row twice or half-done; the views read
/// it as they read the table. A sealed event's redeliveries are counted in `sealed_redeliveries`.
const SCHEMA_V8: &str = r#"
ALTER TABLE events RENAME TO events_hot;
CREATE TABLE segments (
    first_seq        INTEGER PRIMARY KEY,
    last_seq         INTEGER NOT NULL,
    file             TEXT NOT NULL,              -- inside the data directory's segments/
    events           INTEGER NOT NULL,
    min_time         TEXT NOT NULL,
    max_time         TEXT NOT NULL,
    min_received_at  TEXT NOT NULL,
    max_received_at  TEXT NOT NULL,
    raw_bytes        INTEGER NOT NULL,           -- the events' JSON
    file_bytes       INTEGER NOT NULL,
    sealed_at        TEXT NOT NULL
);
CREATE TABLE sealed_redeliveries (
    seq           INTEGER PRIMARY KEY,           -- a sealed event
    redeliveries  INTEGER NOT NULL
);

DROP VIEW event_lineage;
CREATE VIEW event_lineage AS
    SELECT e.event_id, e.event_type, e.correlation_id, e.causation_id, e.source AS source_service,
           e.time AS timestamp, e.subject AS aggregate_id, j.journey, j.journey_key, e.topic,
           e.partition, e."offset"
    FROM events e LEFT JOIN event_journeys j ON j.seq = e.seq;
"#;

/// Version 9: the unsealed events' lookup keys live in memory (`hot.rs`); `events_hot` keeps only
/// indexes in ingest order, so a commit dirties the pages at the table's end and no others.
const SCHEMA_V9: &str = r#"
DROP INDEX events_identity;
DROP INDEX events_correlation;
DROP INDEX events_causation;
DROP INDEX events_subject;
"#;

/// Version 10: nor on time alone. Evidence arrives out of order (a Kafka backlog partition by
/// partition), which writes an index on time at random places; the unsealed events' times are in
/// memory too (`hot.rs`). `events_type_time` stays: with sealing off, a query by event type over
/// millions of unsealed events needs it (a runbook's `event_type IN (…)` took 2.3 s without).
const SCHEMA_V10: &str = r#"
DROP INDEX events_time;
"#;

/// SQL for the last seq the registered segments cover (NULL when there are none): the last
/// segment by `first_seq`, the rowid, since segments ascend and do not overlap. One index lookup,
/// where `max(last_seq)` read every row of `segments`, one more per seal.
macro_rules! last_sealed_seq {
    () => {
        "(SELECT last_seq FROM segments ORDER BY first_seq DESC LIMIT 1)"
    };
}
pub(crate) use last_sealed_seq;

/// The last position of the log: events and redeliveries share the ingest order (0 when empty).
pub const LOG_END: &str = concat!(
    "SELECT max(coalesce((SELECT max(seq) FROM events_hot), 0), coalesce(",
    last_sealed_seq!(),
    ", 0), coalesce((SELECT max(seq) FROM redeliveries), 0))"
);

/// Query-planner stability: without it this SQLite build (STAT4) marks bound parameters of our
/// statements as plan-relevant and re-prepares each statement on every new value, which made every
/// indexed lookup several times slower (callgrind: 64–70% of read time in sqlite3Reprepare).
fn stable_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Settings and migrations for the one read-write connection.
pub fn prepare_writer(conn: &Connection, cache_bytes: u64) -> Result<(), StoreError> {
    stable_plans(conn)?;
    // WAL: readers never block the writer. FULL: a commit returns only after the WAL is fsynced.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    // Index pages stay hot between commits (a negative size is in KiB).
    conn.pragma_update(None, "cache_size", -((cache_bytes / 1024).max(1) as i64))?;
    // The writer checkpoints itself (`writer.rs`, `checkpoint_if_due`); after each restart of the
    // log its file is cut back to the checkpoint interval.
    conn.pragma_update(None, "journal_size_limit", crate::writer::WAL_CHECKPOINT_BYTES as i64)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found: version, known: SCHEMA_VERSION });
    }
    migrate(conn, version, SCHEMA_VERSION)
}

/// Every layout version in order, with the migration that makes it from the one before.
const MIGRATIONS: [(i64, &str); 10] = [
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
    (4, SCHEMA_V4),
    (5, SCHEMA_V5),
    (6, SCHEMA_V6),
    (7, SCHEMA_V7),
    (8, SCHEMA_V8),
    (9, SCHEMA_V9),
    (10, SCHEMA_V10),
];

/// Runs the migrations after `from` up to `to`, each in its own transaction.
fn migrate(conn: &Connection, from: i64, to: i64) -> Result<(), StoreError> {
    for (target, migration) in MIGRATIONS {
        if from < target && target <= to {
            conn.execute_batch(&format!("BEGIN; {migration} PRAGMA user_version = {target}; COMMIT;"))?;
        }
    }
    Ok(())
}

/// A new database file laid out as `version` left it, for tests of the migrations that follow:
/// what a store written by an older causeway holds.
#[doc(hidden)]
pub fn create_at_version(path: &std::path::Path, version: i64) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    migrate(&conn, 0, version)?;
    Ok(conn)
}

/// The most of the database file a reader maps into memory.
const READER_MMAP_BYTES: i64 = 2 << 30;

/// Settings for read-only connections.
pub(crate) fn prepare_reader(conn: &mut Connection, reader: crate::sql::Reader) -> Result<(), StoreError> {
    stable_plans(conn)?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -16384)?; // 16 MiB
    // Pages of the database file are read through a memory map (up to SQLite's 2 GiB cap; past
    // it and from the WAL, by read calls): a scan of a million unsealed events spent 40% of its
    // CPU in `pread` and copying pages its 16 MiB cache could not keep.
    conn.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
    crate::sql::install_authorizer(conn, reader);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements that read how far the sealed history goes run with every lookup, every
    /// count and every seal: none may read all of `segments`, which grows by a row per seal.
    /// (SQLite's plan says `SCAN` for a walk and for one step in rowid order alike; its step
    /// counter tells them apart.)
    #[test]
    fn the_sealed_range_is_read_without_walking_segments() {
        let dir = tempfile::tempdir().unwrap();
        let conn = create_at_version(&dir.path().join("db"), SCHEMA_VERSION).unwrap();
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999)
             INSERT INTO segments SELECT i * 100 + 1, i * 100 + 100, 'f' || i, 100, 't', 't', 'r', 'r', 0, 0, 's' FROM n",
        )
        .unwrap();
        for sql in [LOG_END, crate::seal::SEALED_UPTO, crate::sealed::SEALED_BOUNDS] {
            let mut stmt = conn.prepare(sql).unwrap();
            let last: i64 = stmt.query_row([], |r| r.get(if sql == crate::sealed::SEALED_BOUNDS { 1 } else { 0 })).unwrap();
            assert_eq!(last, 100_000, "{sql}");
            let steps = stmt.get_status(rusqlite::StatementStatus::VmStep);
            assert!(steps < 100, "{sql} took {steps} steps over 1,000 segments");
        }
    }
}
