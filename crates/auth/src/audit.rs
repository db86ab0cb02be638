//! The audit log, `DATA/auth/audit.ndjson`: one CloudEvent per line for each write, replay,
//! discard, model reload, SQL query, token change and refusal of a known token, appended and never
//! rewritten. Each line carries its sequence number (`auditseq`) and the SHA-256 of the line before
//! it (`auditprev`), so a line changed, removed or inserted breaks the chain where it happened
//! ([`verify`]). The lines are CloudEvents so they can be shipped as they are to another
//! collector (`GET /v1/audit`, `causeway audit`).
//!
//! **Invariants:** a line is written whole by one `write` on a file opened for appending, under
//! the same lock for every process (the server and `causeway token`), after re-reading the tail
//! when another process appended; lines reach the disk within a second ([`AuditLog::sync`]).

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::tokens::{AUTH_DIR, AuthError, create_private_dir, hex, private_file, random, sha256_hex};

const AUDIT_FILE: &str = "audit.ndjson";
const LOCK_FILE: &str = "audit.lock";
/// The `auditprev` of the first line.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The tail read to find the last line: lines are far shorter (details are capped by their writers).
const TAIL_BYTES: u64 = 256 * 1024;

/// Where the chain stands: the file's length when last seen, the last line's number and hash.
struct Tail {
    len: u64,
    seq: u64,
    hash: String,
}

pub struct AuditLog {
    path: PathBuf,
    lock_path: PathBuf,
    file: Mutex<(File, Tail)>,
    dirty: AtomicBool,
}

impl AuditLog {
    pub fn open(data: &Path) -> Result<AuditLog, AuthError> {
        let dir = data.join(AUTH_DIR);
        create_private_dir(&dir)?;
        let path = dir.join(AUDIT_FILE);
        let lock_path = dir.join(LOCK_FILE);
        let mut file = private_file(&path)?;
        let tail = read_tail(&mut file, &path)?;
        Ok(AuditLog { path, lock_path, file: Mutex::new((file, tail)), dirty: AtomicBool::new(false) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry: `action` (e.g. `dlq.replay`) becomes the type `causeway.audit.ACTION`,
    /// `subject` says who (a token id, or `anonymous` with auth off), `data` what happened.
    pub fn append(&self, action: &str, subject: &str, data: Value) -> Result<(), AuthError> {
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| AuthError::Io { what, path, source }
        };
        let lock = private_file(&self.lock_path)?;
        lock.lock().map_err(io("lock", &self.lock_path))?;
        let mut guard = self.file.lock().expect("audit lock");
        let (file, tail) = &mut *guard;
        let len = file.metadata().map_err(io("read", &self.path))?.len();
        if len != tail.len {
            // Another process (`causeway token`) appended since.
            *tail = read_tail(file, &self.path)?;
        }
        let seq = tail.seq + 1;
        let entry = json!({
            "specversion": "1.0",
            "id": format!("audit-{seq}-{}", hex(&random::<4>())),
            "source": "causeway/audit",
            "type": format!("causeway.audit.{action}"),
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "subject": subject,
            "datacontenttype": "application/json",
            "auditseq": seq,
            "auditprev": tail.hash,
            "data": data,
        });
        let line = serde_json::to_string(&entry).expect("an audit entry serialises");
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        file.write_all(&bytes).map_err(io("append to", &self.path))?;
        *tail = Tail { len: len + bytes.len() as u64, seq, hash: sha256_hex(line.as_bytes()) };
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Flushes appended lines to the disk, if any; the server calls it every second.
    pub fn sync(&self) -> Result<(), AuthError> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let guard = self.file.lock().expect("audit lock");
            guard.0.sync_data().map_err(|source| AuthError::Io { what: "sync", path: self.path.clone(), source })?;
        }
        Ok(())
    }

    /// Entries with `time` at or after `since` (RFC 3339, compared as instants), oldest first, at
    /// most `limit`; whether more matched. Streamed: what it reads is the entries it answers with,
    /// plus a binary search for `since` over the file's lines, however long the log has grown.
    pub fn read(&self, since: Option<chrono::DateTime<chrono::Utc>>, limit: usize) -> Result<(Vec<Value>, bool), AuthError> {
        let wrap = |source| AuthError::Io { what: "read", path: self.path.clone(), source };
        let mut file = File::open(&self.path).map_err(wrap)?;
        let start = match since {
            Some(since) => seek_before(&mut file, since - CLOCK_STEP_ALLOWANCE).map_err(wrap)?,
            None => 0,
        };
        file.seek(SeekFrom::Start(start)).map_err(wrap)?;
        let mut out = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(wrap)?;
            if line.trim().is_empty() {
                continue;
            }
            let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
            if since.is_some_and(|s| entry_time(&entry).is_none_or(|t| t < s)) {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(entry);
        }
        Ok((out, false))
    }
}

/// How far an entry's time may fall behind an earlier line's (a clock stepped back between two
/// appends) and still be found by a read `since`: the search starts this much earlier and the
/// scan filters from there.
const CLOCK_STEP_ALLOWANCE: chrono::Duration = chrono::Duration::minutes(10);

/// Below this many bytes the search stops and the scan takes over.
const SEARCH_SPAN: u64 = 64 * 1024;

fn entry_time(entry: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    entry["time"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&chrono::Utc))
}

/// The start of a line at or before the first line whose time is at or after `at`: a binary
/// search over byte offsets, as lines are appended in time order.
fn seek_before(file: &mut File, at: chrono::DateTime<chrono::Utc>) -> std::io::Result<u64> {
    let (mut low, mut high) = (0, file.metadata()?.len());
    while low + SEARCH_SPAN < high {
        let middle = low + (high - low) / 2;
        match line_after(file, middle)? {
            // Every line up to this one is older: the search goes on after it.
            Some((start, Some(time))) if time < at => low = start,
            // Newer, unreadable or none: the first line wanted starts before `middle`.
            _ => high = middle,
        }
    }
    Ok(low)
}

/// The first whole line starting after `offset`: its start and its entry's time.
fn line_after(file: &mut File, offset: u64) -> std::io::Result<Option<(u64, Option<chrono::DateTime<chrono::Utc>>)>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(&mut *file);
    let mut skipped = Vec::new();
    let start = offset + reader.read_until(b'\n', &mut skipped)? as u64;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 || !line.ends_with('\n') {
        return Ok(None);
    }
    Ok(Some((start, serde_json::from_str::<Value>(&line).ok().as_ref().and_then(entry_time))))
}

/// The last line's number and hash, from the end of the file.
fn read_tail(file: &mut File, path: &Path) -> Result<Tail, AuthError> {
    let wrap = |source| AuthError::Io { what: "read", path: path.to_path_buf(), source };
    let len = file.metadata().map_err(wrap)?.len();
    if len == 0 {
        return Ok(Tail { len, seq: 0, hash: GENESIS.into() });
    }
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start)).map_err(wrap)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(wrap)?;
    let text = String::from_utf8_lossy(&bytes);
    let last = text.trim_end_matches('\n').rsplit('\n').next().unwrap_or_default();
    let seq = serde_json::from_str::<Value>(last).ok().and_then(|v| v["auditseq"].as_u64()).ok_or_else(|| AuthError::Corrupt {
        path: path.to_path_buf(),
        message: "its last line is not an audit entry; keep the file for the record, move it aside, and start again".into(),
    })?;
    if !text.ends_with('\n') {
        return Err(AuthError::Corrupt { path: path.to_path_buf(), message: "its last line is cut short".into() });
    }
    Ok(Tail { len, seq, hash: sha256_hex(last.as_bytes()) })
}

/// Checks the whole chain: each line an entry numbered one more than the line before, naming the
/// hash of that line. The number of entries, or the first line (1-based) that breaks the chain.
pub fn verify(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut previous = GENESIS.to_string();
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let entry: Value = serde_json::from_str(line).map_err(|e| format!("line {n} is not an audit entry: {e}"))?;
        if entry["auditseq"].as_u64() != Some(count + 1) {
            return Err(format!("line {n}: auditseq is {}, the chain expects {}", entry["auditseq"], count + 1));
        }
        if entry["auditprev"].as_str() != Some(previous.as_str()) {
            return Err(format!("line {n}: auditprev does not match the line before it: a line was changed, removed or inserted there"));
        }
        previous = sha256_hex(line.as_bytes());
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_chain_across_processes_and_a_change_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        log.append("events.ingest", "0123456789", json!({"accepted": 3})).unwrap();
        // A second writer on the same directory, as `causeway token` is beside a running server.
        let other = AuditLog::open(dir.path()).unwrap();
        other.append("token.create", "cli", json!({"id": "abc"})).unwrap();
        log.append("dlq.replay", "0123456789", json!({"record": 7})).unwrap();
        log.sync().unwrap();
        assert_eq!(verify(log.path()), Ok(3));

        let (entries, more) = log.read(None, 10).unwrap();
        assert!(!more);
        let types: Vec<&str> = entries.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["causeway.audit.events.ingest", "causeway.audit.token.create", "causeway.audit.dlq.replay"]);
        assert_eq!(entries[2]["auditseq"], 3);
        let (first, more) = log.read(None, 1).unwrap();
        assert!(more && first.len() == 1);

        // Editing a line in place breaks the chain at the line after it.
        let text = std::fs::read_to_string(log.path()).unwrap();
        std::fs::write(log.path(), text.replacen("\"accepted\":3", "\"accepted\":0", 1)).unwrap();
        let broken = verify(log.path()).unwrap_err();
        assert!(broken.starts_with("line 2:"), "{broken}");
        // Removing a line breaks it too.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(log.path(), format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(verify(log.path()).unwrap_err().starts_with("line 2:"));
    }

    /// A read `since` finds its first entry by a binary search over a long log: it answers what a
    /// filter over every line answers, at the log's start, middle and end and beyond both ends.
    #[test]
    fn reads_since_a_time_answer_what_every_line_filtered_answers() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for i in 0..4000 {
            log.append("events.ingest", "0123456789", json!({"accepted": i, "note": "x".repeat(200)})).unwrap();
        }
        let (all, more) = log.read(None, usize::MAX).unwrap();
        assert!(!more && all.len() == 4000);
        assert!(std::fs::metadata(log.path()).unwrap().len() > 16 * SEARCH_SPAN, "the search has a file to search");
        let times: Vec<_> = all.iter().map(|e| entry_time(e).unwrap()).collect();
        let micro = chrono::Duration::microseconds(1);
        let mut probes = vec![times[0] - chrono::Duration::hours(1), *times.last().unwrap() + chrono::Duration::hours(1)];
        for i in [0, 1, 999, 2000, 2001, 3998, 3999] {
            probes.extend([times[i], times[i] + micro, times[i] - micro]);
        }
        for since in probes {
            for limit in [1, 10, usize::MAX] {
                let wanted: Vec<&Value> = all.iter().filter(|e| entry_time(e).unwrap() >= since).collect();
                let (got, more) = log.read(Some(since), limit).unwrap();
                let expected: Vec<&Value> = wanted.iter().take(limit).copied().collect();
                assert_eq!(got.iter().collect::<Vec<_>>(), expected, "since {since}, limit {limit}");
                assert_eq!(more, wanted.len() > limit, "since {since}, limit {limit}");
            }
        }
    }

    #[test]
    fn a_log_reopened_goes_on_with_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        AuditLog::open(dir.path()).unwrap().append("model.reload", "anonymous", json!({})).unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        log.append("sql.query", "anonymous", json!({"query": "SELECT 1"})).unwrap();
        assert_eq!(verify(log.path()), Ok(2));
        // A cut-short last line (power lost mid-write) is refused with what to do, not chained over.
        let mut f = std::fs::OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(b"{\"specversion\":\"1.0\",\"auditseq\":3").unwrap();
        let err = AuditLog::open(dir.path()).err().expect("a torn tail is refused").to_string();
        assert!(err.contains("last line"), "{err}");
    }
}
