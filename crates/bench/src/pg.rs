//! The reference design engineers build by hand: an `event_lineage` table on PostgreSQL with
//! indexes on correlation id (+ time), causation id and aggregate id, durable batched INSERTs, and
//! the recursive queries they write for lineage.

use std::time::SystemTime;

use anyhow::{Context as _, Result, bail};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};

use crate::data::GenEvent;

/// The table's DDL for `table` (dropped first).
pub fn create_table_sql(table: &str) -> String {
    format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (
             event_id       text PRIMARY KEY,
             event_type     text,
             correlation_id text,
             causation_id   text,
             source_service text,
             timestamp      timestamptz,
             aggregate_id   text,
             payload        jsonb
         );
         CREATE INDEX {table}_correlation ON {table} (correlation_id, timestamp);
         CREATE INDEX {table}_causation ON {table} (causation_id);
         CREATE INDEX {table}_aggregate ON {table} (aggregate_id);"
    )
}

pub fn connect(url: &str) -> Result<Client> {
    Client::connect(url, NoTls).with_context(|| format!("cannot connect to PostgreSQL with '{url}': start it (scripts/bench does) or pass --pg"))
}

pub fn recreate(url: &str, table: &str) -> Result<()> {
    let mut c = connect(url)?;
    c.batch_execute(&create_table_sql(table)).with_context(|| format!("creating {table}"))?;
    Ok(())
}

pub fn drop_table(url: &str, table: &str) -> Result<()> {
    connect(url)?.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))?;
    Ok(())
}

/// `VACUUM ANALYZE`, as autovacuum would eventually: gives the planner statistics and sets the
/// visibility map, so the queries run in PostgreSQL's steady state.
pub fn vacuum_analyze(url: &str, table: &str) -> Result<()> {
    connect(url)?.batch_execute(&format!("VACUUM ANALYZE {table}"))?;
    Ok(())
}

/// `CHECKPOINT`: writes every dirty buffer out and syncs, so that PostgreSQL's background writes
/// of one stretch do not land in the next stretch of the other side.
pub fn checkpoint(url: &str) -> Result<()> {
    connect(url)?.batch_execute("CHECKPOINT")?;
    Ok(())
}

pub fn count(url: &str, table: &str) -> Result<i64> {
    Ok(connect(url)?.query_one(&format!("SELECT count(*) FROM {table}"), &[])?.get(0))
}

/// Table plus indexes, in bytes.
pub fn total_bytes(url: &str, table: &str) -> Result<i64> {
    Ok(connect(url)?.query_one(&format!("SELECT pg_total_relation_size('{table}')"), &[])?.get(0))
}

/// Server version and the settings that decide durability and caching.
pub fn describe_server(url: &str) -> Result<String> {
    let version: String = connect(url)?.query_one("SHOW server_version", &[])?.get(0);
    Ok(format!("PostgreSQL {version} ({})", settings(url, &["synchronous_commit", "fsync", "wal_sync_method", "shared_buffers"])?))
}

/// `name=value, …` of the server's settings `names`.
pub fn settings(url: &str, names: &[&str]) -> Result<String> {
    let mut c = connect(url)?;
    let mut settings = Vec::new();
    for name in names {
        let value: String = c.query_one(&format!("SHOW {name}"), &[])?.get(0);
        settings.push(format!("{name}={value}"));
    }
    Ok(settings.join(", "))
}

/// One ingest connection: a prepared multi-row INSERT, one transaction per batch.
pub struct Inserter {
    client: Client,
    table: String,
    full: Option<(usize, Statement)>,
}

impl Inserter {
    pub fn new(url: &str, table: &str) -> Result<Inserter> {
        let mut client = connect(url)?;
        // The server default, stated: a commit returns after its WAL is flushed.
        client.batch_execute("SET synchronous_commit = on")?;
        Ok(Inserter { client, table: table.to_string(), full: None })
    }

    fn insert_sql(table: &str, rows: usize) -> String {
        let mut sql = format!(
            "INSERT INTO {table} (event_id, event_type, correlation_id, causation_id, source_service, timestamp, \
             aggregate_id, payload) VALUES "
        );
        for r in 0..rows {
            let b = r * 8;
            if r > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("(${},${},${},${},${},${},${},${}::text::jsonb)", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8));
        }
        sql
    }

    /// Inserts `rows` durably: returns after the commit.
    pub fn insert(&mut self, rows: &[GenEvent]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let statement = match &self.full {
            Some((n, s)) if *n == rows.len() => s.clone(),
            _ => {
                let s = self.client.prepare(&Self::insert_sql(&self.table, rows.len()))?;
                if self.full.is_none() {
                    self.full = Some((rows.len(), s.clone()));
                }
                s
            }
        };
        let times: Vec<SystemTime> = rows.iter().map(GenEvent::system_time).collect();
        let causes: Vec<Option<&str>> = rows.iter().map(|e| e.causation_id.as_deref()).collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(rows.len() * 8);
        for (i, e) in rows.iter().enumerate() {
            params.push(&e.id);
            params.push(&e.event_type);
            params.push(&e.correlation_id);
            params.push(&causes[i]);
            params.push(&e.source);
            params.push(&times[i]);
            params.push(&e.subject);
            params.push(&e.json);
        }
        let mut tx = self.client.transaction()?;
        let n = tx.execute(&statement, &params)?;
        tx.commit()?;
        if n as usize != rows.len() {
            bail!("PostgreSQL inserted {n} of {} rows", rows.len());
        }
        Ok(())
    }
}

/// The three lineage queries, prepared on one connection.
pub struct Queries {
    client: Client,
    chain: Statement,
    descendants: Statement,
    root: Statement,
    ping: Statement,
}

const COLUMNS: &str = "event_id, event_type, correlation_id, causation_id, source_service, timestamp, aggregate_id, payload";

impl Queries {
    pub fn new(url: &str, table: &str) -> Result<Queries> {
        let mut client = connect(url)?;
        let chain = client.prepare(&format!(
            "SELECT event_id, event_type, correlation_id, causation_id, source_service, timestamp, aggregate_id, \
             payload::text FROM {table} WHERE correlation_id = $1 ORDER BY timestamp"
        ))?;
        let descendants = client.prepare(&format!(
            "WITH RECURSIVE d AS (
                 SELECT {COLUMNS} FROM {table} WHERE causation_id = $1
                 UNION ALL
                 SELECT e.event_id, e.event_type, e.correlation_id, e.causation_id, e.source_service, e.timestamp,
                        e.aggregate_id, e.payload
                 FROM {table} e JOIN d ON e.causation_id = d.event_id
             )
             SELECT event_id, event_type, correlation_id, causation_id, source_service, timestamp, aggregate_id,
                    payload::text
             FROM d ORDER BY timestamp"
        ))?;
        let root = client.prepare(&format!(
            "WITH RECURSIVE up AS (
                 SELECT {COLUMNS}, 0 AS depth FROM {table} WHERE event_id = $1
                 UNION ALL
                 SELECT e.event_id, e.event_type, e.correlation_id, e.causation_id, e.source_service, e.timestamp,
                        e.aggregate_id, e.payload, up.depth + 1
                 FROM {table} e JOIN up ON e.event_id = up.causation_id
             )
             SELECT event_id, event_type, correlation_id, causation_id, source_service, timestamp, aggregate_id,
                    payload::text, depth
             FROM up ORDER BY depth DESC LIMIT 1"
        ))?;
        let ping = client.prepare("SELECT 1")?;
        Ok(Queries { client, chain, descendants, root, ping })
    }

    /// Runs a query and reads every column of every row; returns the row count.
    fn run(&mut self, which: Which, id: &str) -> Result<usize> {
        let statement = match which {
            Which::Chain => &self.chain,
            Which::Descendants => &self.descendants,
            Which::Root => &self.root,
        };
        let rows = self.client.query(statement, &[&id])?;
        let mut bytes = 0usize;
        for row in &rows {
            let event_id: &str = row.get(0);
            let event_type: &str = row.get(1);
            let _: Option<&str> = row.get(2);
            let _: Option<&str> = row.get(3);
            let _: &str = row.get(4);
            let _: SystemTime = row.get(5);
            let _: &str = row.get(6);
            let payload: &str = row.get(7);
            bytes += event_id.len() + event_type.len() + payload.len();
        }
        std::hint::black_box(bytes);
        Ok(rows.len())
    }

    /// A round trip without table work.
    pub fn ping(&mut self) -> Result<()> {
        let one: i32 = self.client.query_one(&self.ping, &[])?.get(0);
        std::hint::black_box(one);
        Ok(())
    }

    pub fn chain(&mut self, correlation_id: &str) -> Result<usize> {
        self.run(Which::Chain, correlation_id)
    }

    pub fn descendants(&mut self, event_id: &str) -> Result<usize> {
        self.run(Which::Descendants, event_id)
    }

    pub fn root(&mut self, event_id: &str) -> Result<usize> {
        self.run(Which::Root, event_id)
    }
}

#[derive(Clone, Copy)]
enum Which {
    Chain,
    Descendants,
    Root,
}
