//! Sealed segments: immutable compressed files, each holding a seq range of events moved out of
//! `events_hot`, with hash indexes on the lookup columns and an in-memory event-id filter.
//!
//! # File layout (version 3; every integer little-endian, nothing depends on struct layout)
//!
//! ```text
//! header       "CWSEG1", u16 version
//! dictionaries two zstd dictionaries, the attributes' then the envelopes', each trained on this
//!              segment's frames of its kind (empty for tiny segments)
//! attributes   per block of <= 16 rows / ~8 KiB encoded (both frames): one zstd frame (content
//!              checksum on) of its rows' attributes, every column but seq and the envelope
//! envelopes    per block: one zstd frame (content checksum on) of its rows' envelopes
//! seqs         per block, per row after the first: varint seq delta (the first is the block's first_seq)
//! indexes      4 arrays (event_id, correlation_id, causation_id, subject) of 12-byte entries
//!              (u64 key_hash, u32 position), sorted by (hash, position); None values have none
//! filter       u8 kind: 1 = BinaryFuse8 (seed u64, 3 x u32, fingerprints), 2 = sorted u64 hashes
//! directory    per block, 64 bytes: attributes frame offset u64, envelopes frame offset u64, then
//!              per frame (attributes, envelopes) compressed len u32 + decoded len u32, first position
//!              u32, seqs offset u32, first_seq i64, last_seq i64, min time u32, max time u32 (string refs)
//! strings      varint length + UTF-8 bytes, referenced by offset from the directory and footer
//! columns      the lineage columns: u8 presence, u16 type count + the types, per row a u16 type code,
//!              per row an i64 event time in µs (see `ColumnsBuilder`); version 3 only
//! id filters   3 filters (correlation, causation, subject ids), each as `filter`; version 3 only
//! footer       FOOTER_FIELDS u64s (sections, SegmentInfo, columns, id filters), index checksum u64, checksum u64, u16 version, "CWSEG1"
//! ```
//!
//! Version 2 files (no lineage columns or id filters but the event ids', a footer eight fields
//! shorter) are still read.
//!
//! `checksum` is xxh3 of the dictionaries, seqs, filter, directory, strings, columns, id filters and the footer before it:
//! all of it is read at open, so a damaged or truncated file fails there. Frames carry zstd's own
//! checksum, checked on every decode. The indexes are only read where a lookup lands (checking them
//! at open would read the whole file); every hit is verified against the row, so damage there can lose
//! a hit but never invent one, and [`Segment::verify`] checks them with `index checksum`.
//!
//! Each block is two frames, so that reading the columns without the envelope (a scan of the
//! lineage columns, a lookup's verification) decompresses only the small one: [`Segment::row_attributes`]
//! and [`Segment::find`] read the attributes frame alone, [`Segment::row`] both. Each kind has its
//! own section (an attribute scan reads one contiguous stretch of the file), its own dictionary and
//! its own block cache. In the attributes frame a block's rows are encoded one after the other: a
//! presence byte for the optional columns, then the columns in table order (seq excepted: it lives
//! in `seqs`, readable without decompressing), strings as varint length + bytes, integers as zigzag
//! varints. In the envelopes frame, per row: the envelope's length shifted left by one, the low bit
//! set when it is squeezed, then its bytes. Squeezed, every occurrence of the row's id, source, type,
//! correlation id, causation id, subject and time is replaced by one escape byte (1..=7): JSON never
//! holds those bytes raw, and the attributes already carry the values, so an envelope is rebuilt
//! from both frames.
//!
//! Measured on 100,000 realistic rows (the size test): ~214 bytes a row, 0.37 of the envelopes'
//! bytes, of which ~92 are attributes frames (243 bytes decoded: ids compress badly), ~54 envelopes
//! frames (395 decoded), ~44 the indexes and ~9 the directory and its time strings; a full scan of
//! `row_attributes` costs about half as much as one of `row`. Block size trades a lookup's work
//! against bytes and scans, since a lookup decompresses a whole block to reach a row (size test,
//! per block of at most 32 rows / 16 KiB, 16 / 8 KiB, 8 / 4 KiB): 205.9, 214.2, 225.8 bytes a row;
//! a random `row` 25.0, 15.1, 10.4 µs; `find` by event id 12.1, 6.9, 5.9 µs, by correlation id 87,
//! 45, 38 µs; a full `row_attributes` scan 0.68, 0.73, 0.87 µs a row. 16 rows keeps most of the
//! lookups' gain (at ten million events the first read of an id is a cold block: a descendants
//! walk's p99 fell by about a third with 8-row blocks) for a fraction of the bytes and scan time. Splitting the block made the file 2.5% smaller than version 1's single frame
//! (191.5 bytes a row): each kind compresses better alone. Tried and not taken: one dictionary shared
//! by both kinds (2% larger at 100,000 rows, 5% at 10,000), larger dictionaries than 16 KiB for the
//! attributes and 32 KiB for the envelopes (no gain at 100,000 rows, bytes not won back at 10,000;
//! smaller ones gain under 0.4% on this data, whose payloads vary less than real ones), zstd level
//! 12 for either kind (under 1% smaller, slower to write). Both kinds are compressed at level 3:
//! against level 9 the file is 4% larger (205.9 against 197.8 bytes a row in the size test; level
//! 6 gives 201.5, level 4 214.5) and writing it takes 40% less time (1.27 s against 2.12 s per
//! 100,000 rows), time the sealer otherwise takes from ingest on a small machine. In version 1: a columnar block layout (1.6% smaller blocks, but a row could no
//! longer be read alone), times as binary deltas (1.4%), 64-row blocks (3% smaller, twice the time to
//! reach a row), zstd level 15+ (7% smaller, 4x slower to write), a 112 KiB dictionary (no gain over
//! 64 KiB).

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use memmap2::Mmap;
use xorf::{BinaryFuse8, Filter};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};
use zstd::zstd_safe::{self, DCtx, DDict};

use crate::StoreError;

/// One row of the events table, as sealed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SealedRow {
    pub seq: i64,
    pub event_id: String,
    pub source: String,
    pub event_type: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub subject: Option<String>,
    /// RFC 3339, fixed µs: sorts as text.
    pub time: String,
    pub topic: Option<String>,
    pub received_at: String,
    pub redeliveries: i64,
    /// Canonical CloudEvents JSON.
    pub envelope: String,
    pub partition: Option<i64>,
    pub offset: Option<i64>,
    pub message_time: Option<String>,
}

/// Which indexed text column a lookup is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    EventId,
    CorrelationId,
    CausationId,
    Subject,
}

impl Key {
    pub(crate) const ALL: [Key; 4] = [Key::EventId, Key::CorrelationId, Key::CausationId, Key::Subject];

    fn of(self, row: &SealedRow) -> Option<&str> {
        match self {
            Key::EventId => Some(&row.event_id),
            Key::CorrelationId => row.correlation_id.as_deref(),
            Key::CausationId => row.causation_id.as_deref(),
            Key::Subject => row.subject.as_deref(),
        }
    }
}

/// What a segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub first_seq: i64,
    pub last_seq: i64,
    pub rows: u64,
    pub min_time: String,
    pub max_time: String,
    pub min_received_at: String,
    pub max_received_at: String,
    /// Sum of the envelopes' lengths.
    pub raw_bytes: u64,
    pub file_bytes: u64,
}

/// The stable 64-bit hash of the file's indexes and filter. Persisted: it must never change.
pub fn key_hash(value: &str) -> u64 {
    xxh3_64(value.as_bytes())
}

const MAGIC: &[u8; 6] = b"CWSEG1";
const VERSION: u16 = 3;
/// The version before the lineage columns: still read.
const VERSION_2: u16 = 2;
const HEADER_LEN: u64 = 8;
const BLOCK_MAX_ROWS: usize = 16;
const BLOCK_MAX_BYTES: usize = 8 * 1024;
const LEVEL: i32 = 3;
/// The two frames of a block, each kind with its own dictionary: indexes into `[_; 2]` arrays.
const ATTRIBUTES: usize = 0;
const ENVELOPES: usize = 1;
const DICT_MAX_BYTES: [usize; 2] = [16 * 1024, 32 * 1024];
/// Training input cap per frame kind: more samples barely improve the dictionary and cost seconds.
const DICT_SAMPLE_BYTES: [usize; 2] = [1 << 20, 3 << 20];
const DIR_ENTRY: usize = 64;
const INDEX_ENTRY: usize = 12;
/// Below this many ids the filter is the sorted hashes themselves (a fuse filter needs a few).
const FUSE_MIN_KEYS: usize = 64;
/// Per frame kind: an attribute-only scan keeps as many blocks as before and decodes no envelope.
const CACHE_BLOCKS: usize = 16;
/// 2 dictionaries, attributes, envelopes, seqs, filter, strings: (offset, len); 4 indexes: (offset, count);
/// directory (offset, count); first_seq, last_seq, rows, raw_bytes, and 4 string refs (min/max time,
/// min/max received_at).
const FOOTER_FIELDS_V2: usize = 2 * 7 + 2 * 4 + 2 + 4 + 4;
/// Version 3 adds the lineage columns' section and the filters of correlation, causation and
/// subject ids (offset, len each) after version 2's fields.
const FOOTER_FIELDS: usize = FOOTER_FIELDS_V2 + 2 + 2 * 3;
const fn footer_len(fields: usize) -> u64 {
    (fields * 8 + 8 + 8 + 8) as u64
}
const FOOTER_LEN: u64 = footer_len(FOOTER_FIELDS);

// ---------------------------------------------------------------------------------------------
// Encoding primitives

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at).ok_or("truncated varint")?;
            self.at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err("overlong varint")
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let s = self.b.get(self.at..self.at.checked_add(n).ok_or("bad length")?).ok_or("truncated")?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.bytes(1)?[0])
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The `varint length + bytes` string at `at`, if one is there.
fn string_at(b: &[u8], at: usize) -> Option<&str> {
    let mut r = Reader { b, at };
    let n = r.varint().ok()?;
    std::str::from_utf8(r.bytes(usize::try_from(n).ok()?).ok()?).ok()
}

/// Appends `s` to the strings section; its offset there.
fn put_ref_string(strings: &mut Vec<u8>, s: &str) -> u32 {
    let at = strings.len() as u32;
    put_str(strings, s);
    at
}

// ---------------------------------------------------------------------------------------------
// Rows inside a block

// Presence bits of the optional columns.
const P_CORRELATION: u8 = 1;
const P_CAUSATION: u8 = 2;
const P_SUBJECT: u8 = 4;
const P_TOPIC: u8 = 8;
const P_PARTITION: u8 = 16;
const P_OFFSET: u8 = 32;
const P_MESSAGE_TIME: u8 = 64;
/// In the envelope's length: the envelope has its columns' values replaced by escape bytes.
const ENVELOPE_SQUEEZED: u64 = 1;

/// The columns an envelope escape byte stands for: escape `i + 1` is `escaped(row)[i]`.
fn escaped(row: &SealedRow) -> [Option<&str>; 7] {
    [
        Some(&row.event_id),
        Some(&row.source),
        Some(&row.event_type),
        row.correlation_id.as_deref(),
        row.causation_id.as_deref(),
        row.subject.as_deref(),
        Some(&row.time),
    ]
}

/// A row's attributes: every column but seq (in `seqs`) and the envelope (in the envelopes frame).
fn encode_attributes(out: &mut Vec<u8>, row: &SealedRow) {
    let bits = [
        (row.correlation_id.is_some(), P_CORRELATION),
        (row.causation_id.is_some(), P_CAUSATION),
        (row.subject.is_some(), P_SUBJECT),
        (row.topic.is_some(), P_TOPIC),
        (row.partition.is_some(), P_PARTITION),
        (row.offset.is_some(), P_OFFSET),
        (row.message_time.is_some(), P_MESSAGE_TIME),
    ];
    out.push(bits.iter().filter(|(present, _)| *present).map(|(_, bit)| bit).sum());
    put_str(out, &row.event_id);
    put_str(out, &row.source);
    put_str(out, &row.event_type);
    for s in [&row.correlation_id, &row.causation_id, &row.subject].into_iter().flatten() {
        put_str(out, s);
    }
    put_str(out, &row.time);
    if let Some(t) = &row.topic {
        put_str(out, t);
    }
    put_str(out, &row.received_at);
    put_varint(out, zigzag(row.redeliveries));
    for v in [row.partition, row.offset].into_iter().flatten() {
        put_varint(out, zigzag(v));
    }
    if let Some(t) = &row.message_time {
        put_str(out, t);
    }
}

/// A row's envelope, squeezed when it can be: its length (shifted, the low bit [`ENVELOPE_SQUEEZED`])
/// and bytes. Unsqueezing needs the row's attributes.
fn encode_envelope(out: &mut Vec<u8>, row: &SealedRow) {
    // Escape bytes are only unambiguous in an envelope without them; replacing longer values first
    // keeps a value that contains another whole. A value with a low byte could swallow an escape.
    if row.envelope.bytes().any(|b| b <= 7) {
        put_varint(out, (row.envelope.len() as u64) << 1);
        out.extend_from_slice(row.envelope.as_bytes());
        return;
    }
    let mut values: Vec<(usize, &str)> =
        escaped(row).into_iter().enumerate().filter_map(|(i, v)| Some((i, v?))).filter(|(_, v)| v.len() >= 4 && v.bytes().all(|b| b > 7)).collect();
    values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    // What `str::replace` does per value (leftmost, non-overlapping matches), with a vectorised
    // search and two buffers in turn: it took a third of the sealer's time (profile of ingest at 1M).
    let (mut squeezed, mut next) = (row.envelope.as_bytes().to_vec(), Vec::with_capacity(row.envelope.len()));
    for (i, v) in values {
        next.clear();
        let mut copied = 0;
        for at in memchr::memmem::find_iter(&squeezed, v.as_bytes()) {
            next.extend_from_slice(&squeezed[copied..at]);
            next.push(i as u8 + 1);
            copied = at + v.len();
        }
        if copied > 0 {
            next.extend_from_slice(&squeezed[copied..]);
            std::mem::swap(&mut squeezed, &mut next);
        }
    }
    put_varint(out, ((squeezed.len() as u64) << 1) | ENVELOPE_SQUEEZED);
    out.extend_from_slice(&squeezed);
}

/// A row's attributes as they lie in a decompressed attributes frame: parsing them allocates
/// nothing, so a block's rows are found, and a lookup's hit verified, without building the rows.
struct RawRow<'a> {
    text: [Option<&'a [u8]>; 10],
    ints: [Option<i64>; 3],
}

// `RawRow::text` slots, in encoding order.
const T_EVENT_ID: usize = 0;
const T_SOURCE: usize = 1;
const T_TYPE: usize = 2;
const T_CORRELATION: usize = 3;
const T_CAUSATION: usize = 4;
const T_SUBJECT: usize = 5;
const T_TIME: usize = 6;
const T_TOPIC: usize = 7;
const T_RECEIVED: usize = 8;
const T_MESSAGE_TIME: usize = 9;

impl<'a> RawRow<'a> {
    fn parse(r: &mut Reader<'a>) -> Result<RawRow<'a>, &'static str> {
        let present = r.u8()?;
        let mut text = [None; 10];
        let mut str_if = |r: &mut Reader<'a>, slot: usize, bit: u8| -> Result<(), &'static str> {
            if bit == 0 || present & bit != 0 {
                let n = r.varint()? as usize;
                text[slot] = Some(r.bytes(n)?);
            }
            Ok(())
        };
        for (slot, bit) in
            [(T_EVENT_ID, 0), (T_SOURCE, 0), (T_TYPE, 0), (T_CORRELATION, P_CORRELATION), (T_CAUSATION, P_CAUSATION), (T_SUBJECT, P_SUBJECT)]
        {
            str_if(r, slot, bit)?;
        }
        str_if(r, T_TIME, 0)?;
        str_if(r, T_TOPIC, P_TOPIC)?;
        str_if(r, T_RECEIVED, 0)?;
        let mut ints = [Some(unzigzag(r.varint()?)), None, None];
        for (i, bit) in [(1, P_PARTITION), (2, P_OFFSET)] {
            if present & bit != 0 {
                ints[i] = Some(unzigzag(r.varint()?));
            }
        }
        str_if(r, T_MESSAGE_TIME, P_MESSAGE_TIME)?;
        Ok(RawRow { text, ints })
    }

    fn key(&self, key: Key) -> Option<&'a [u8]> {
        self.text[match key {
            Key::EventId => T_EVENT_ID,
            Key::CorrelationId => T_CORRELATION,
            Key::CausationId => T_CAUSATION,
            Key::Subject => T_SUBJECT,
        }]
    }

    /// The row without its envelope (left empty).
    fn to_row(&self, seq: i64) -> Result<SealedRow, &'static str> {
        let s = |slot: usize| self.text[slot].map(|b| String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8")).transpose();
        let req = |slot: usize| s(slot).map(Option::unwrap_or_default);
        Ok(SealedRow {
            seq,
            event_id: req(T_EVENT_ID)?,
            source: req(T_SOURCE)?,
            event_type: req(T_TYPE)?,
            correlation_id: s(T_CORRELATION)?,
            causation_id: s(T_CAUSATION)?,
            subject: s(T_SUBJECT)?,
            time: req(T_TIME)?,
            topic: s(T_TOPIC)?,
            received_at: req(T_RECEIVED)?,
            redeliveries: self.ints[0].unwrap_or_default(),
            envelope: String::new(),
            partition: self.ints[1],
            offset: self.ints[2],
            message_time: s(T_MESSAGE_TIME)?,
        })
    }
}

/// The envelope stored for `row` (squeezed or not), whole again.
fn unsqueeze(row: &SealedRow, stored: &[u8], squeezed: bool) -> Result<String, &'static str> {
    if !squeezed {
        return String::from_utf8(stored.to_vec()).map_err(|_| "invalid UTF-8");
    }
    let values = escaped(row);
    let mut envelope = Vec::with_capacity(stored.len() + 256);
    for piece in stored.split_inclusive(|&b| b <= 7) {
        match piece.split_last() {
            Some((&escape @ 1..=7, literal)) => {
                envelope.extend_from_slice(literal);
                envelope.extend_from_slice(values[escape as usize - 1].ok_or("escape for an absent column")?.as_bytes());
            }
            _ if piece.contains(&0) => return Err("stray byte in envelope"),
            _ => envelope.extend_from_slice(piece),
        }
    }
    String::from_utf8(envelope).map_err(|_| "invalid UTF-8")
}

/// A decompressed attributes frame: its bytes, where each row starts, and the rows' seqs.
struct AttributesBlock {
    data: Vec<u8>,
    starts: Vec<usize>,
    seqs: Vec<i64>,
}

impl AttributesBlock {
    fn raw(&self, i: usize) -> RawRow<'_> {
        // Every row parsed when the block was decoded.
        RawRow::parse(&mut Reader { b: &self.data, at: self.starts[i] }).expect("a row checked at decode")
    }
}

/// A decompressed envelopes frame: its bytes, and per row where its stored envelope lies and
/// whether it is squeezed.
struct EnvelopesBlock {
    data: Vec<u8>,
    envelopes: Vec<(Range<usize>, bool)>,
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A block encoded, not yet compressed.
struct PendingBlock {
    /// The attributes and the envelopes frames' contents.
    frames: [Vec<u8>; 2],
    /// Where each row ends in each frame: the dictionaries' training samples.
    row_ends: [Vec<u32>; 2],
    first_pos: u32,
    seqs_offset: u32,
    first_seq: i64,
    last_seq: i64,
    min_time: String,
    max_time: String,
}

/// Writes a segment file from rows in strictly ascending seq (gaps allowed): to `path` + ".tmp",
/// fsynced, renamed to `path`, the directory fsynced. Errors on empty input or a seq out of order.
pub fn write_segment(path: &Path, rows: impl IntoIterator<Item = SealedRow>) -> Result<SegmentInfo, StoreError> {
    write_segment_version(path, rows, VERSION)
}

/// [`write_segment`] in a given format version: version 2 for the tests that read what an
/// earlier causeway wrote.
fn write_segment_version(path: &Path, rows: impl IntoIterator<Item = SealedRow>, version: u16) -> Result<SegmentInfo, StoreError> {
    let fail = |reason: String| StoreError::Segment { path: path.to_path_buf(), reason };
    let mut blocks: Vec<PendingBlock> = Vec::new();
    let mut seqs = Vec::new();
    let mut keys: [Vec<(u64, u32)>; 4] = Default::default();
    let mut columns = ColumnsBuilder::default();
    let mut info: Option<SegmentInfo> = None;
    let mut pos = 0u32;
    for row in rows {
        let info = match &mut info {
            Some(info) if row.seq <= info.last_seq => return Err(fail(format!("seq {} follows seq {}: not ascending", row.seq, info.last_seq))),
            Some(info) => info,
            None => info.insert(SegmentInfo {
                first_seq: row.seq,
                last_seq: row.seq,
                rows: 0,
                min_time: row.time.clone(),
                max_time: row.time.clone(),
                min_received_at: row.received_at.clone(),
                max_received_at: row.received_at.clone(),
                raw_bytes: 0,
                file_bytes: 0,
            }),
        };
        let full = blocks
            .last()
            .is_none_or(|b| b.row_ends[ATTRIBUTES].len() >= BLOCK_MAX_ROWS || b.frames.iter().map(Vec::len).sum::<usize>() >= BLOCK_MAX_BYTES);
        if full {
            let seqs_offset = seqs.len() as u32;
            let (first_seq, time) = (row.seq, row.time.clone());
            blocks.push(PendingBlock {
                frames: [Vec::with_capacity(BLOCK_MAX_BYTES / 2), Vec::with_capacity(BLOCK_MAX_BYTES)],
                row_ends: Default::default(),
                first_pos: pos,
                seqs_offset,
                first_seq,
                last_seq: first_seq,
                min_time: time.clone(),
                max_time: time,
            });
        } else {
            let block = blocks.last_mut().expect("a block");
            put_varint(&mut seqs, row.seq.wrapping_sub(block.last_seq) as u64);
        }
        let block = blocks.last_mut().expect("a block");
        encode_attributes(&mut block.frames[ATTRIBUTES], &row);
        encode_envelope(&mut block.frames[ENVELOPES], &row);
        for (frame, ends) in block.frames.iter().zip(&mut block.row_ends) {
            ends.push(frame.len() as u32);
        }
        block.last_seq = row.seq;
        min_max(&mut block.min_time, &mut block.max_time, &row.time);
        for (key, index) in Key::ALL.iter().zip(&mut keys) {
            if let Some(v) = key.of(&row) {
                index.push((key_hash(v), pos));
            }
        }
        columns.push(&row);
        info.last_seq = row.seq;
        info.rows += 1;
        info.raw_bytes += row.envelope.len() as u64;
        min_max(&mut info.min_time, &mut info.max_time, &row.time);
        min_max(&mut info.min_received_at, &mut info.max_received_at, &row.received_at);
        pos = pos.checked_add(1).ok_or_else(|| fail("more than 2^32 rows".into()))?;
    }
    let mut info = info.ok_or_else(|| fail("no rows to write".into()))?;
    let dicts = [ATTRIBUTES, ENVELOPES].map(|kind| train_dictionary(&blocks, kind));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let columns = (version == VERSION).then(|| columns.encode());
    let written = write_file(&tmp, &dicts, &blocks, &seqs, &mut keys, columns.as_deref(), &info);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    info.file_bytes = written?;
    std::fs::rename(&tmp, path).map_err(|e| StoreError::Io { path: tmp.clone(), source: e })?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::Io { path: dir.to_path_buf(), source: e })?;
    Ok(info)
}

/// Writes and fsyncs the file at `tmp`; its length.
fn write_file(
    tmp: &Path,
    dicts: &[Vec<u8>; 2],
    blocks: &[PendingBlock],
    seqs: &[u8],
    keys: &mut [Vec<(u64, u32)>; 4],
    columns: Option<&[u8]>,
    info: &SegmentInfo,
) -> Result<u64, StoreError> {
    // Without columns, version 2's layout.
    let version = if columns.is_some() { VERSION } else { VERSION_2 };
    let io = |e: std::io::Error| StoreError::Io { path: tmp.to_path_buf(), source: e };
    let mut file = Writer { out: BufWriter::new(File::create(tmp).map_err(io)?), at: 0, sum: Xxh3::new() };
    file.put(MAGIC, false).map_err(io)?;
    file.put(&version.to_le_bytes(), false).map_err(io)?;
    let mut footer = Vec::with_capacity(FOOTER_LEN as usize);
    let section = |footer: &mut Vec<u8>, start: u64, len: u64| {
        footer.extend_from_slice(&start.to_le_bytes());
        footer.extend_from_slice(&len.to_le_bytes());
    };
    for dict in dicts {
        section(&mut footer, file.at, dict.len() as u64);
        file.put(dict, true).map_err(io)?;
    }
    // Per block and frame kind: (offset, compressed len | decoded len << 32).
    let mut frames = vec![[(0u64, 0u64); 2]; blocks.len()];
    for (kind, dict) in dicts.iter().enumerate() {
        let mut compressor = zstd::bulk::Compressor::with_dictionary(LEVEL, dict).map_err(io)?;
        compressor.set_parameter(zstd_safe::CParameter::ChecksumFlag(true)).map_err(io)?;
        compressor.set_parameter(zstd_safe::CParameter::DictIdFlag(false)).map_err(io)?;
        let start = file.at;
        for (block, at) in blocks.iter().zip(&mut frames) {
            let data = &block.frames[kind];
            let frame = compressor.compress(data).map_err(io)?;
            if frame.len() > u32::MAX as usize || data.len() > u32::MAX as usize {
                return Err(StoreError::Segment { path: tmp.to_path_buf(), reason: "a block over 4 GiB".into() });
            }
            at[kind] = (file.at, (frame.len() as u64) | (data.len() as u64) << 32);
            file.put(&frame, false).map_err(io)?;
        }
        section(&mut footer, start, file.at - start);
    }
    let mut directory = Vec::with_capacity(blocks.len() * DIR_ENTRY);
    let mut strings = Vec::new();
    for (block, [(attributes_at, attributes_lens), (envelopes_at, envelopes_lens)]) in blocks.iter().zip(frames) {
        for v in [attributes_at, envelopes_at, attributes_lens, envelopes_lens] {
            directory.extend_from_slice(&v.to_le_bytes());
        }
        for v in [block.first_pos, block.seqs_offset] {
            directory.extend_from_slice(&v.to_le_bytes());
        }
        for v in [block.first_seq, block.last_seq] {
            directory.extend_from_slice(&v.to_le_bytes());
        }
        for s in [&block.min_time, &block.max_time] {
            directory.extend_from_slice(&put_ref_string(&mut strings, s).to_le_bytes());
        }
    }
    debug_assert_eq!(directory.len(), blocks.len() * DIR_ENTRY);
    section(&mut footer, file.at, seqs.len() as u64);
    file.put(seqs, true).map_err(io)?;
    let mut index_sum = Xxh3::new();
    for index in keys.iter_mut() {
        index.sort_unstable();
        section(&mut footer, file.at, index.len() as u64);
        let mut bytes = Vec::with_capacity(index.len() * INDEX_ENTRY);
        for (hash, pos) in index.iter() {
            bytes.extend_from_slice(&hash.to_le_bytes());
            bytes.extend_from_slice(&pos.to_le_bytes());
        }
        index_sum.update(&bytes);
        file.put(&bytes, false).map_err(io)?;
    }
    let filter = encode_filter(&keys[0]);
    section(&mut footer, file.at, filter.len() as u64);
    file.put(&filter, true).map_err(io)?;
    section(&mut footer, file.at, blocks.len() as u64);
    file.put(&directory, true).map_err(io)?;
    let refs = [&info.min_time, &info.max_time, &info.min_received_at, &info.max_received_at].map(|s| put_ref_string(&mut strings, s) as u64);
    section(&mut footer, file.at, strings.len() as u64);
    file.put(&strings, true).map_err(io)?;
    for v in [info.first_seq as u64, info.last_seq as u64, info.rows, info.raw_bytes].into_iter().chain(refs) {
        footer.extend_from_slice(&v.to_le_bytes());
    }
    if let Some(columns) = columns {
        section(&mut footer, file.at, columns.len() as u64);
        file.put(columns, true).map_err(io)?;
        for index in &keys[1..] {
            let filter = encode_filter(index);
            section(&mut footer, file.at, filter.len() as u64);
            file.put(&filter, true).map_err(io)?;
        }
    }
    footer.extend_from_slice(&index_sum.digest().to_le_bytes());
    debug_assert_eq!(footer.len(), if columns.is_some() { FOOTER_FIELDS } else { FOOTER_FIELDS_V2 } * 8 + 8);
    file.put(&footer, true).map_err(io)?;
    let sum = file.sum.digest();
    file.put(&sum.to_le_bytes(), false).map_err(io)?;
    file.put(&version.to_le_bytes(), false).map_err(io)?;
    file.put(MAGIC, false).map_err(io)?;
    file.out.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
    Ok(file.at)
}

/// The lineage columns of a segment (version 3): each row's event type and time, readable without
/// decompressing a block, so that a scan by event type or time over sealed history touches no
/// frame. Layout: a presence byte (0: absent, when a time is not in the canonical form the
/// micros give back exactly), then the distinct types (u16 count, each varint length + UTF-8),
/// then per row a u16 type code, then per row an i64 time in microseconds since the epoch.
#[derive(Default)]
struct ColumnsBuilder {
    types: Vec<String>,
    codes: Vec<u16>,
    times: Vec<i64>,
    /// A type past u16's range or a time that does not round-trip: no columns.
    unusable: bool,
}

impl ColumnsBuilder {
    fn push(&mut self, row: &SealedRow) {
        if self.unusable {
            return;
        }
        let code = match self.types.iter().position(|t| *t == row.event_type) {
            Some(c) => c,
            None => {
                self.types.push(row.event_type.clone());
                self.types.len() - 1
            }
        };
        match (u16::try_from(code), time_micros(&row.time)) {
            (Ok(code), Some(micros)) => {
                self.codes.push(code);
                self.times.push(micros);
            }
            _ => self.unusable = true,
        }
    }

    fn encode(&self) -> Vec<u8> {
        if self.unusable {
            return vec![0];
        }
        let mut out = Vec::with_capacity(3 + self.types.iter().map(|t| t.len() + 2).sum::<usize>() + self.codes.len() * 10);
        out.push(1);
        out.extend_from_slice(&(self.types.len() as u16).to_le_bytes());
        for t in &self.types {
            put_str(&mut out, t);
        }
        self.codes.iter().for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
        self.times.iter().for_each(|t| out.extend_from_slice(&t.to_le_bytes()));
        out
    }
}

/// A canonical time's microseconds since the epoch, when formatting them gives the same text back.
fn time_micros(time: &str) -> Option<i64> {
    let micros = chrono::DateTime::parse_from_rfc3339(time).ok()?.timestamp_micros();
    (format_micros(micros)? == time).then_some(micros)
}

fn format_micros(micros: i64) -> Option<String> {
    // Columns are written only when every time is canonical: years 0000–9999.
    causeway_envelope::format_micros(micros)
}

/// The lineage columns as read at open.
struct Columns {
    types: Vec<String>,
    codes: Range<usize>,
    times: Range<usize>,
}

impl Columns {
    fn parse(b: &[u8], rows: usize, base: usize) -> Result<Option<Columns>, &'static str> {
        let mut r = Reader { b, at: 0 };
        if r.u8()? == 0 {
            return Ok(None);
        }
        let n = u16::from_le_bytes(r.bytes(2)?.try_into().map_err(|_| "short")?) as usize;
        let mut types = Vec::with_capacity(n);
        for _ in 0..n {
            let len = usize::try_from(r.varint()?).map_err(|_| "long type")?;
            types.push(std::str::from_utf8(r.bytes(len)?).map_err(|_| "a type is not UTF-8")?.to_string());
        }
        let codes = base + r.at..base + r.at + rows * 2;
        r.bytes(rows * 2)?;
        let times = base + r.at..base + r.at + rows * 8;
        r.bytes(rows * 8)?;
        if r.at != b.len() {
            return Err("trailing bytes");
        }
        // A code past the types (damage the checksum missed) reads as no type: the row is decoded.
        Ok(Some(Columns { types, codes, times }))
    }
}

fn min_max(min: &mut String, max: &mut String, v: &str) {
    if v < min.as_str() {
        *min = v.to_string();
    }
    if v > max.as_str() {
        *max = v.to_string();
    }
}

/// Counts the offset it writes at and hashes the checksummed sections.
struct Writer {
    out: BufWriter<File>,
    at: u64,
    sum: Xxh3,
}

impl Writer {
    fn put(&mut self, bytes: &[u8], checksummed: bool) -> std::io::Result<()> {
        if checksummed {
            self.sum.update(bytes);
        }
        self.at += bytes.len() as u64;
        self.out.write_all(bytes)
    }
}

/// The dictionary of one frame kind, trained on its rows spread over the whole segment; empty when
/// there is too little to train on (the dictionary would cost more than it saves) or training fails.
fn train_dictionary(blocks: &[PendingBlock], kind: usize) -> Vec<u8> {
    let total: usize = blocks.iter().map(|b| b.frames[kind].len()).sum();
    let max_size = DICT_MAX_BYTES[kind].min(total / 16);
    if max_size < 4096 {
        return Vec::new();
    }
    let step = total.div_ceil(DICT_SAMPLE_BYTES[kind]).max(1);
    let (mut data, mut sizes) = (Vec::new(), Vec::new());
    for block in blocks.iter().step_by(step) {
        data.extend_from_slice(&block.frames[kind]);
        let mut start = 0;
        for &end in &block.row_ends[kind] {
            sizes.push(end as usize - start);
            start = end as usize;
        }
    }
    zstd::dict::from_continuous(&data, &sizes, max_size).unwrap_or_default()
}

const FILTER_FUSE: u8 = 1;
const FILTER_EXACT: u8 = 2;

/// The event-id filter from the (sorted) event-id index.
fn encode_filter(ids: &[(u64, u32)]) -> Vec<u8> {
    let mut hashes: Vec<u64> = ids.iter().map(|(h, _)| *h).collect();
    hashes.dedup();
    if hashes.len() >= FUSE_MIN_KEYS
        && let Ok(f) = BinaryFuse8::try_from(&hashes)
    {
        let d = &f.descriptor;
        let mut out = vec![FILTER_FUSE];
        out.extend_from_slice(&d.seed.to_le_bytes());
        for v in [d.segment_length, d.segment_length_mask, d.segment_count_length] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&f.fingerprints);
        // Only what `open` accepts (it bounds-checks the filter's shape).
        if decode_filter(&out).is_some() {
            return out;
        }
    }
    let mut out = vec![FILTER_EXACT];
    hashes.iter().for_each(|h| out.extend_from_slice(&h.to_le_bytes()));
    out
}

/// A filter of key hashes: false means none of them is `hash`.
pub(crate) enum IdFilter {
    Fuse(BinaryFuse8),
    Exact(Vec<u64>),
}

impl IdFilter {
    /// The filter of `hashes` (any order, repeats allowed), in memory.
    pub(crate) fn build(mut hashes: Vec<u64>) -> IdFilter {
        hashes.sort_unstable();
        hashes.dedup();
        if hashes.len() >= FUSE_MIN_KEYS
            && let Ok(f) = BinaryFuse8::try_from(&hashes)
        {
            return IdFilter::Fuse(f);
        }
        IdFilter::Exact(hashes)
    }

    pub(crate) fn contains(&self, hash: u64) -> bool {
        match self {
            IdFilter::Fuse(f) => f.contains(&hash),
            IdFilter::Exact(hashes) => hashes.binary_search(&hash).is_ok(),
        }
    }
}

fn decode_filter(b: &[u8]) -> Option<IdFilter> {
    match *b.first()? {
        FILTER_FUSE if b.len() >= 21 => {
            let descriptor = xorf::Descriptor {
                seed: u64_at(b, 1),
                segment_length: u32_at(b, 9),
                segment_length_mask: u32_at(b, 13),
                segment_count_length: u32_at(b, 17),
            };
            let fingerprints: Box<[u8]> = b[21..].into();
            // The probe indexes up to segment_count_length + 2 segments: refuse a filter that would read past its end.
            let reach = u64::from(descriptor.segment_count_length) + 2 * u64::from(descriptor.segment_length);
            let sane = descriptor.segment_length.is_power_of_two() && descriptor.segment_length_mask == descriptor.segment_length - 1;
            (sane && reach <= fingerprints.len() as u64).then_some(IdFilter::Fuse(BinaryFuse8 { descriptor, fingerprints }))
        }
        FILTER_EXACT if (b.len() - 1).is_multiple_of(8) => Some(IdFilter::Exact(b[1..].chunks_exact(8).map(|c| u64_at(c, 0)).collect())),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// The footer's sections, as positions in the file.
struct Sections {
    /// Per frame kind: its dictionary and its frames.
    dicts: [Range<usize>; 2],
    frames: [Range<usize>; 2],
    seqs: Range<usize>,
    indexes: [Range<usize>; 4],
    filter: Range<usize>,
    directory: Range<usize>,
    strings: Range<usize>,
    /// Version 3's lineage columns.
    columns: Option<Range<usize>>,
    /// Version 3's filters of correlation, causation and subject ids.
    key_filters: Option<[Range<usize>; 3]>,
    index_sum: u64,
}

/// One block's directory entry.
struct BlockEntry {
    /// Per frame kind: the compressed frame in the file and its decoded length.
    frames: [Range<usize>; 2],
    decoded_lens: [usize; 2],
    first_pos: u32,
    seqs_offset: usize,
    first_seq: i64,
    last_seq: i64,
    min_time: usize,
    max_time: usize,
}

/// An open segment file: memory-mapped, shareable between threads.
pub struct Segment {
    path: PathBuf,
    map: Mmap,
    info: SegmentInfo,
    sections: Sections,
    n_blocks: usize,
    /// Per frame kind.
    dicts: [Option<DDict<'static>>; 2],
    filter: IdFilter,
    /// Each row's event type and time, when the file has them (version 3).
    columns: Option<Columns>,
    /// Filters of correlation, causation and subject ids (version 3), in memory.
    key_filters: Option<[IdFilter; 3]>,
    /// The last decoded frames of each kind, most recent first: a lookup of several rows in one
    /// block decodes once, and a scan of attributes alone decodes no envelope.
    attributes_cache: Mutex<Vec<(usize, Arc<AttributesBlock>)>>,
    envelopes_cache: Mutex<Vec<(usize, Arc<EnvelopesBlock>)>>,
    /// Envelope frames decompressed since the file opened: what tests read to tell a walk that
    /// reads links from one that reads whole rows.
    envelope_decodes: std::sync::atomic::AtomicU64,
}

thread_local! {
    /// One decompression context per thread, shared by every segment (each passes its dictionary).
    static DCTX: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
}

impl Segment {
    /// Maps the file and checks its header, footer, checksum and directory.
    pub fn open(path: &Path) -> Result<Segment, StoreError> {
        let fail = |reason: &str| StoreError::Segment { path: path.to_path_buf(), reason: reason.to_string() };
        let file = File::open(path).map_err(|e| StoreError::Io { path: path.to_path_buf(), source: e })?;
        // SAFETY: segment files are immutable once renamed into place and are only ever replaced
        // whole (rename) or deleted, never written or truncated in place while mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| StoreError::Io { path: path.to_path_buf(), source: e })?;
        let len = map.len();
        if (len as u64) < HEADER_LEN + footer_len(FOOTER_FIELDS_V2) {
            return Err(fail("too short to be a segment (truncated?)"));
        }
        let version = |at: usize| u16::from_le_bytes([map[at], map[at + 1]]);
        if &map[..6] != MAGIC || &map[len - 6..] != MAGIC {
            return Err(fail("not a segment file, or truncated (no CWSEG1 magic)"));
        }
        let fields = match (version(6), version(len - 8)) {
            (VERSION, VERSION) => FOOTER_FIELDS,
            (VERSION_2, VERSION_2) => FOOTER_FIELDS_V2,
            (v, _) => return Err(fail(&format!("segment version {v} is not {VERSION_2} or {VERSION}: written by another causeway?"))),
        };
        if (len as u64) < HEADER_LEN + footer_len(fields) {
            return Err(fail("too short to be a segment (truncated?)"));
        }
        let footer_at = len - footer_len(fields) as usize;
        let f = |i: usize| u64_at(&map, footer_at + i * 8);
        let body = HEADER_LEN as usize..footer_at;
        let section = |start: u64, size: u64| -> Result<Range<usize>, StoreError> {
            let r = usize::try_from(start).ok().zip(usize::try_from(size).ok()).and_then(|(s, n)| Some(s..s.checked_add(n)?));
            r.filter(|r| r.start >= body.start && r.end <= body.end).ok_or_else(|| fail("a section lies outside the file"))
        };
        let entries = |start: u64, count: u64, size: usize| section(start, count.saturating_mul(size as u64));
        let sections = Sections {
            dicts: [section(f(0), f(1))?, section(f(2), f(3))?],
            frames: [section(f(4), f(5))?, section(f(6), f(7))?],
            seqs: section(f(8), f(9))?,
            indexes: [
                entries(f(10), f(11), INDEX_ENTRY)?,
                entries(f(12), f(13), INDEX_ENTRY)?,
                entries(f(14), f(15), INDEX_ENTRY)?,
                entries(f(16), f(17), INDEX_ENTRY)?,
            ],
            filter: section(f(18), f(19))?,
            directory: entries(f(20), f(21), DIR_ENTRY)?,
            strings: section(f(22), f(23))?,
            columns: if fields == FOOTER_FIELDS { Some(section(f(32), f(33))?) } else { None },
            key_filters: if fields == FOOTER_FIELDS { Some([section(f(34), f(35))?, section(f(36), f(37))?, section(f(38), f(39))?]) } else { None },
            index_sum: f(fields),
        };
        let mut sum = Xxh3::new();
        for r in [&sections.dicts[0], &sections.dicts[1], &sections.seqs, &sections.filter, &sections.directory, &sections.strings] {
            sum.update(&map[r.clone()]);
        }
        for r in sections.columns.iter().chain(sections.key_filters.iter().flatten()) {
            sum.update(&map[r.clone()]);
        }
        sum.update(&map[footer_at..len - 16]);
        if sum.digest() != u64_at(&map, len - 16) {
            return Err(fail("checksum mismatch: the file is damaged"));
        }
        let strings = &map[sections.strings.clone()];
        let string = |at: u64| string_at(strings, at as usize).map(str::to_string).ok_or_else(|| fail("bad string reference"));
        let info = SegmentInfo {
            first_seq: f(24) as i64,
            last_seq: f(25) as i64,
            rows: f(26),
            raw_bytes: f(27),
            min_time: string(f(28))?,
            max_time: string(f(29))?,
            min_received_at: string(f(30))?,
            max_received_at: string(f(31))?,
            file_bytes: len as u64,
        };
        let dict = |r: &Range<usize>| match &map[r.clone()] {
            [] => Ok(None),
            d => DDict::try_create(d).map(Some).ok_or_else(|| fail("bad dictionary")),
        };
        let dicts = [dict(&sections.dicts[0])?, dict(&sections.dicts[1])?];
        let filter = decode_filter(&map[sections.filter.clone()]).ok_or_else(|| fail("bad event-id filter"))?;
        let key_filters = match &sections.key_filters {
            Some(rs) => {
                let decode = |r: &Range<usize>| decode_filter(&map[r.clone()]).ok_or_else(|| fail("bad id filter"));
                Some([decode(&rs[0])?, decode(&rs[1])?, decode(&rs[2])?])
            }
            None => None,
        };
        let columns = match &sections.columns {
            Some(r) => Columns::parse(&map[r.clone()], info.rows as usize, r.start).map_err(|e| fail(&format!("bad lineage columns: {e}")))?,
            None => None,
        };
        let n_blocks = f(21) as usize;
        let segment = Segment {
            path: path.to_path_buf(),
            map,
            info,
            sections,
            n_blocks,
            dicts,
            filter,
            key_filters,
            columns,
            attributes_cache: Mutex::new(Vec::new()),
            envelopes_cache: Mutex::new(Vec::new()),
            envelope_decodes: Default::default(),
        };
        segment.check_directory().map_err(|reason| fail(&reason))?;
        Ok(segment)
    }

    /// Every block's entry points inside its section and its seqs decode and agree: what the
    /// infallible reads below rely on.
    fn check_directory(&self) -> Result<(), String> {
        let rows = self.len();
        if self.n_blocks == 0 || rows == 0 || rows > u32::MAX as usize || self.n_blocks > rows {
            return Err("no rows or blocks".into());
        }
        let mut next_seqs = 0;
        let mut last = None;
        for b in 0..self.n_blocks {
            let e = self.entry(b);
            // Positions start at 0 and every block has rows (first_pos rises, the last below len).
            self.block_rows_checked(b)?;
            let ok = e.frames.iter().zip(&self.sections.frames).all(|(frame, section)| frame.start >= section.start && frame.end <= section.end)
                && e.seqs_offset == next_seqs
                && (b > 0 || e.first_pos == 0)
                && last.is_none_or(|l| e.first_seq > l)
                && string_at(self.strings(), e.min_time).is_some()
                && string_at(self.strings(), e.max_time).is_some();
            if !ok {
                return Err(format!("directory entry {b} is inconsistent"));
            }
            let seqs = self.block_seqs(b).map_err(|e| format!("block {b}: {e}"))?;
            if seqs.last() != Some(&e.last_seq) {
                return Err(format!("block {b}: seqs do not end at its last seq"));
            }
            next_seqs = self.seqs_end(b);
            last = Some(e.last_seq);
        }
        if next_seqs != self.sections.seqs.len() || last != Some(self.info.last_seq) || self.entry(0).first_seq != self.info.first_seq {
            return Err("the directory does not match the footer".into());
        }
        Ok(())
    }

    fn block_rows_checked(&self, b: usize) -> Result<usize, String> {
        let end = if b + 1 < self.n_blocks { self.entry(b + 1).first_pos as usize } else { self.len() };
        end.checked_sub(self.entry(b).first_pos as usize).filter(|&n| n > 0).ok_or_else(|| format!("block {b} has no rows"))
    }

    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows in the segment.
    pub fn len(&self) -> usize {
        self.info.rows as usize
    }

    /// Envelope frames decompressed since the file opened.
    pub fn envelope_decodes(&self) -> u64 {
        self.envelope_decodes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Never true: a segment is written from at least one row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn strings(&self) -> &[u8] {
        &self.map[self.sections.strings.clone()]
    }

    fn entry(&self, b: usize) -> BlockEntry {
        let d = self.directory_entry(b);
        let frame = |kind: usize| {
            let (start, lens) = (u64_at(d, kind * 8) as usize, u64_at(d, 16 + kind * 8));
            (start..start.saturating_add((lens & 0xffff_ffff) as usize), (lens >> 32) as usize)
        };
        let ((attributes, attributes_len), (envelopes, envelopes_len)) = (frame(ATTRIBUTES), frame(ENVELOPES));
        BlockEntry {
            frames: [attributes, envelopes],
            decoded_lens: [attributes_len, envelopes_len],
            first_pos: self.first_pos(b),
            seqs_offset: u32_at(d, 36) as usize,
            first_seq: u64_at(d, 40) as i64,
            last_seq: u64_at(d, 48) as i64,
            min_time: u32_at(d, 56) as usize,
            max_time: u32_at(d, 60) as usize,
        }
    }

    fn directory_entry(&self, b: usize) -> &[u8] {
        &self.map[self.sections.directory.start + b * DIR_ENTRY..][..DIR_ENTRY]
    }

    /// Block `b`'s first position, alone: what finding a position's block reads.
    fn first_pos(&self, b: usize) -> u32 {
        u32_at(self.directory_entry(b), 32)
    }

    fn seqs_end(&self, b: usize) -> usize {
        if b + 1 < self.n_blocks { self.entry(b + 1).seqs_offset } else { self.sections.seqs.len() }
    }

    fn block_range(&self, b: usize) -> Range<u32> {
        let end = if b + 1 < self.n_blocks { self.first_pos(b + 1) } else { self.len() as u32 };
        self.first_pos(b)..end
    }

    /// The seqs of block `b`'s rows, without decompressing it.
    fn block_seqs(&self, b: usize) -> Result<Vec<i64>, &'static str> {
        let e = self.entry(b);
        let rows = self.block_range(b).len();
        let bytes = self.map[self.sections.seqs.clone()].get(e.seqs_offset..self.seqs_end(b)).ok_or("bad seqs offset")?;
        let mut r = Reader { b: bytes, at: 0 };
        let mut seqs = Vec::with_capacity(rows);
        seqs.push(e.first_seq);
        for _ in 1..rows {
            let next = r.varint().ok().and_then(|d| seqs[seqs.len() - 1].checked_add_unsigned(d)).ok_or("bad seq delta")?;
            seqs.push(next);
        }
        if r.at != bytes.len() || seqs.windows(2).any(|w| w[0] >= w[1]) {
            return Err("seqs out of order");
        }
        Ok(seqs)
    }

    /// The block holding position `pos` (< len).
    fn block_of(&self, pos: u32) -> usize {
        partition_point(self.n_blocks, |b| self.first_pos(b) <= pos) - 1
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Segment { path: self.path.clone(), reason }
    }

    /// Block `b`'s decoded frame of one kind, from its cache or decoded (outside the lock, so readers
    /// of other blocks don't wait).
    fn cached<T>(&self, cache: &Mutex<Vec<(usize, Arc<T>)>>, b: usize, decode: impl FnOnce() -> Result<T, String>) -> Result<Arc<T>, StoreError> {
        {
            let mut cache = cache.lock().expect("segment cache lock");
            if let Some(i) = cache.iter().position(|(k, _)| *k == b) {
                let hit = cache.remove(i);
                cache.insert(0, hit.clone());
                return Ok(hit.1);
            }
        }
        let decoded = Arc::new(decode().map_err(|e| self.corrupt(format!("block {b}: {e}")))?);
        let mut cache = cache.lock().expect("segment cache lock");
        cache.retain(|(k, _)| *k != b);
        cache.insert(0, (b, decoded.clone()));
        cache.truncate(CACHE_BLOCKS);
        Ok(decoded)
    }

    fn attributes(&self, b: usize) -> Result<Arc<AttributesBlock>, StoreError> {
        self.cached(&self.attributes_cache, b, || self.decode_attributes(b))
    }

    fn envelopes(&self, b: usize) -> Result<Arc<EnvelopesBlock>, StoreError> {
        self.cached(&self.envelopes_cache, b, || self.decode_envelopes(b))
    }

    /// Block `b`'s frame of one kind, decompressed (zstd checks its checksum).
    fn decompress(&self, b: usize, kind: usize) -> Result<Vec<u8>, String> {
        let e = self.entry(b);
        let frame = &self.map[e.frames[kind].clone()];
        let mut data = Vec::with_capacity(e.decoded_lens[kind]);
        DCTX.with_borrow_mut(|dctx| match &self.dicts[kind] {
            Some(dict) => dctx.decompress_using_ddict(&mut data, frame, dict),
            None => dctx.decompress(&mut data, frame),
        })
        .map_err(|code| format!("zstd: {}", zstd_safe::get_error_name(code)))?;
        if data.len() != e.decoded_lens[kind] {
            return Err("decoded length differs from the directory's".into());
        }
        Ok(data)
    }

    fn decode_attributes(&self, b: usize) -> Result<AttributesBlock, String> {
        let data = self.decompress(b, ATTRIBUTES)?;
        let seqs = self.block_seqs(b)?;
        let mut r = Reader { b: &data, at: 0 };
        let mut starts = Vec::with_capacity(seqs.len());
        for _ in &seqs {
            starts.push(r.at);
            RawRow::parse(&mut r)?;
        }
        if r.at != data.len() {
            return Err("trailing bytes in the attributes".into());
        }
        Ok(AttributesBlock { data, starts, seqs })
    }

    fn decode_envelopes(&self, b: usize) -> Result<EnvelopesBlock, String> {
        self.envelope_decodes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = self.decompress(b, ENVELOPES)?;
        let rows = self.block_range(b).len();
        let mut r = Reader { b: &data, at: 0 };
        let mut envelopes = Vec::with_capacity(rows);
        for _ in 0..rows {
            let len = r.varint()?;
            let start = r.at;
            r.bytes(usize::try_from(len >> 1).map_err(|_| "bad length")?)?;
            envelopes.push((start..r.at, len & ENVELOPE_SQUEEZED != 0));
        }
        if r.at != data.len() {
            return Err("trailing bytes in the envelopes".into());
        }
        Ok(EnvelopesBlock { data, envelopes })
    }

    /// Position `pos` (< len): its block, and its index there.
    fn locate(&self, pos: u32) -> (usize, usize) {
        let b = self.block_of(pos);
        (b, (pos - self.first_pos(b)) as usize)
    }

    /// The attributes of the row at `pos` (< len): only its block's attributes frame is decoded.
    fn raw_row<T>(&self, pos: u32, f: impl FnOnce(&RawRow<'_>, i64) -> Result<T, &'static str>) -> Result<T, StoreError> {
        let (b, i) = self.locate(pos);
        let block = self.attributes(b)?;
        f(&block.raw(i), block.seqs[i]).map_err(|e| self.corrupt(format!("row {pos}: {e}")))
    }

    /// Row positions (ascending) whose `key` column equals `value`; hash hits are verified against the rows.
    pub fn find(&self, key: Key, value: &str) -> Result<Vec<u32>, StoreError> {
        let index = &self.map[self.sections.indexes[key as usize].clone()];
        let hash = key_hash(value);
        let n = index.len() / INDEX_ENTRY;
        let mut i = partition_point(n, |i| u64_at(index, i * INDEX_ENTRY) < hash);
        let mut found = Vec::new();
        while i < n && u64_at(index, i * INDEX_ENTRY) == hash {
            let pos = u32_at(index, i * INDEX_ENTRY + 8);
            if pos as usize >= self.len() {
                return Err(self.corrupt(format!("index entry {i} points past the last row")));
            }
            if self.raw_row(pos, |row, _| Ok(row.key(key) == Some(value.as_bytes())))? {
                found.push(pos);
            }
            i += 1;
        }
        Ok(found)
    }

    /// False means no row has this event id. In memory, no I/O; true is wrong < 0.4% of the time.
    pub fn may_contain_event_id(&self, event_id: &str) -> bool {
        self.filter.contains(key_hash(event_id))
    }

    /// False means no row has `value` as its `key`: the event-id filter, or (version 3) the filter
    /// of that key's ids; a version 2 file says true for the other keys.
    pub fn may_contain(&self, key: Key, value: &str) -> bool {
        self.may_contain_hash(key, key_hash(value))
    }

    /// [`Segment::may_contain`] of a value whose [`key_hash`] is `hash`.
    pub(crate) fn may_contain_hash(&self, key: Key, hash: u64) -> bool {
        match (key, &self.key_filters) {
            (Key::EventId, _) => self.filter.contains(hash),
            (_, Some(filters)) => filters[key as usize - 1].contains(hash),
            (_, None) => true,
        }
    }

    /// The [`key_hash`] of every `key` value of the rows, from its index (sorted, repeats kept).
    pub(crate) fn key_hashes(&self, key: Key) -> impl Iterator<Item = u64> + '_ {
        let index = &self.map[self.sections.indexes[key as usize].clone()];
        index.chunks_exact(INDEX_ENTRY).map(|entry| u64_at(entry, 0))
    }

    /// The event type of the row at a position, without decompressing its block; `None` when the
    /// file has no lineage columns (version 2) or no such row.
    pub fn event_type_at(&self, pos: u32) -> Option<&str> {
        let c = self.columns.as_ref().filter(|_| (pos as usize) < self.len())?;
        let at = c.codes.start + 2 * pos as usize;
        let code = u16::from_le_bytes([*self.map.get(at)?, *self.map.get(at + 1)?]);
        c.types.get(code as usize).map(String::as_str)
    }

    /// Whether any row may have this event type: `false` only when the lineage columns say none has.
    pub fn may_contain_event_type(&self, event_type: &str) -> bool {
        self.columns.as_ref().is_none_or(|c| c.types.iter().any(|t| t == event_type))
    }

    /// The event time of the row at a position (canonical RFC 3339), without decompressing its
    /// block; `None` when the file has no lineage columns or no such row.
    pub fn time_at(&self, pos: u32) -> Option<String> {
        let c = self.columns.as_ref().filter(|_| (pos as usize) < self.len())?;
        let at = c.times.start + 8 * pos as usize;
        format_micros(i64::from_le_bytes(self.map.get(at..at + 8)?.try_into().ok()?))
    }

    /// Whether the file has the lineage columns (version 3).
    pub fn has_lineage_columns(&self) -> bool {
        self.columns.is_some()
    }

    /// The seq of the row at a position, without decompressing its block.
    /// The positions of the block holding `pos` and their seqs, in order: what a scan keeps to
    /// answer the seq of each of the block's rows without decoding the block's seqs again.
    pub fn block_seqs_at(&self, pos: u32) -> Result<(Range<u32>, Vec<i64>), StoreError> {
        if pos as usize >= self.len() {
            return Err(self.corrupt(format!("no row at position {pos}: the segment has {}", self.len())));
        }
        let b = self.block_of(pos);
        let seqs = self.block_seqs(b).map_err(|e| self.corrupt(format!("block {b}: {e}")))?;
        Ok((self.block_range(b), seqs))
    }

    pub fn seq_at(&self, pos: u32) -> Result<i64, StoreError> {
        if pos as usize >= self.len() {
            return Err(self.corrupt(format!("no row at position {pos}: the segment has {}", self.len())));
        }
        let b = self.block_of(pos);
        let seqs = self.block_seqs(b).map_err(|e| self.corrupt(format!("block {b}: {e}")))?;
        Ok(seqs[(pos - self.first_pos(b)) as usize])
    }

    /// The row at a position: decodes both of its block's frames.
    pub fn row(&self, pos: u32) -> Result<SealedRow, StoreError> {
        let mut row = self.row_attributes(pos)?;
        let (b, i) = self.locate(pos);
        let block = self.envelopes(b)?;
        let (stored, squeezed) = &block.envelopes[i];
        row.envelope = unsqueeze(&row, &block.data[stored.clone()], *squeezed).map_err(|e| self.corrupt(format!("row {pos}: {e}")))?;
        Ok(row)
    }

    /// The row at a position without its envelope (`envelope` left empty): decompresses only the
    /// attributes frame.
    pub fn row_attributes(&self, pos: u32) -> Result<SealedRow, StoreError> {
        if pos as usize >= self.len() {
            return Err(self.corrupt(format!("no row at position {pos}: the segment has {}", self.len())));
        }
        self.raw_row(pos, |row, seq| row.to_row(seq))
    }

    /// Position of the row with this seq, if present.
    pub fn position_of_seq(&self, seq: i64) -> Result<Option<u32>, StoreError> {
        let b = partition_point(self.n_blocks, |b| self.entry(b).first_seq <= seq);
        if b == 0 || seq > self.entry(b - 1).last_seq {
            return Ok(None);
        }
        let seqs = self.block_seqs(b - 1).map_err(|e| self.corrupt(format!("block {}: {e}", b - 1)))?;
        Ok(seqs.binary_search(&seq).ok().map(|i| self.entry(b - 1).first_pos + i as u32))
    }

    /// First position whose seq >= `seq` (`len()` if none): where a range scan starts.
    pub fn lower_bound_seq(&self, seq: i64) -> u32 {
        let b = partition_point(self.n_blocks, |b| self.entry(b).last_seq < seq);
        if b == self.n_blocks {
            return self.len() as u32;
        }
        // Checked at open, so this cannot fail; the block's start is a safe answer regardless.
        let seqs = self.block_seqs(b).unwrap_or_default();
        self.entry(b).first_pos + seqs.partition_point(|&s| s < seq) as u32
    }

    /// Position ranges whose blocks may hold rows with time in `[from, to]` (inclusive, text compare):
    /// pruned by each block's min/max time; the caller filters rows exactly.
    pub fn positions_maybe_in_time(&self, from: Option<&str>, to: Option<&str>) -> Vec<Range<u32>> {
        let strings = self.strings();
        let mut ranges: Vec<Range<u32>> = Vec::new();
        for b in 0..self.n_blocks {
            let e = self.entry(b);
            let (min, max) = (string_at(strings, e.min_time).unwrap_or(""), string_at(strings, e.max_time).unwrap_or("\u{10ffff}"));
            if to.is_some_and(|to| min > to) || from.is_some_and(|from| max < from) {
                continue;
            }
            let r = self.block_range(b);
            match ranges.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => ranges.push(r),
            }
        }
        ranges
    }

    /// Reads the whole file: the indexes against their checksum and every block decoded. For a check
    /// command; `open` checks only what it reads.
    pub fn verify(&self) -> Result<(), StoreError> {
        let mut sum = Xxh3::new();
        self.sections.indexes.iter().for_each(|r| sum.update(&self.map[r.clone()]));
        if sum.digest() != self.sections.index_sum {
            return Err(self.corrupt("index checksum mismatch: the file is damaged".into()));
        }
        for pos in 0..self.len() as u32 {
            self.row(pos)?;
        }
        Ok(())
    }
}

/// The first `i` in `0..n` for which `pred` is false (`pred` true then false over the range).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) { lo = mid + 1 } else { hi = mid }
    }
    lo
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use super::*;

    /// splitmix64: deterministic data without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }
        fn hex(&mut self, n: usize) -> String {
            (0..n).map(|_| char::from_digit(self.below(16) as u32, 16).unwrap()).collect()
        }
        fn alnum(&mut self, n: usize) -> String {
            const A: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
            (0..n).map(|_| A[self.below(A.len() as u64) as usize] as char).collect()
        }
        fn uuid(&mut self) -> String {
            format!("{}-{}-4{}-{}{}-{}", self.hex(8), self.hex(4), self.hex(3), self.pick(&["8", "9", "a", "b"]), self.hex(3), self.hex(12))
        }
    }

    struct Journey {
        correlation: String,
        subject: Option<String>,
        customer: String,
        trace: Option<String>,
        last_id: Option<String>,
        step: usize,
        steps: usize,
        currency: &'static str,
    }

    const TYPES: &[&str] = &[
        "com.shop.order.placed",
        "com.shop.payment.authorized",
        "com.shop.inventory.reserved",
        "com.shop.order.confirmed",
        "com.shop.shipment.created",
        "com.shop.shipment.dispatched",
        "com.shop.invoice.issued",
        "com.shop.shipment.delivered",
        "com.shop.order.completed",
        "com.shop.review.requested",
        "com.shop.loyalty.credited",
        "com.shop.order.archived",
    ];
    const SOURCES: &[&str] = &["/checkout-api", "urn:shop:payments", "//inventory.svc/eu-1", "/fulfilment/worker", "/billing", "/crm/loyalty"];

    fn time_string(micros: i64) -> String {
        chrono::DateTime::from_timestamp_micros(micros).unwrap().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    /// Rows as an order system would log them: ~300 journeys in flight at once, so the events of one
    /// correlation are spread over thousands of rows (no help from locality), ~8 events each.
    fn generate(n: usize, seed: u64) -> Vec<SealedRow> {
        let mut rng = Rng(seed);
        let mut clock: i64 = 1_796_126_400_000_000; // 2026-12-01T10:00:00Z
        let mut seq = 1_000;
        let mut offsets = [0i64; 12];
        let new_journey = |rng: &mut Rng| Journey {
            correlation: rng.uuid(),
            subject: (!rng.chance(10)).then(|| format!("order-{}", 10_000_000 + rng.below(89_999_999))),
            customer: format!("cus_{}", rng.alnum(14)),
            trace: rng.chance(30).then(|| rng.hex(32)),
            last_id: None,
            step: 0,
            steps: 4 + rng.below(9) as usize,
            currency: rng.pick(&["EUR", "USD", "GBP", "SEK"]),
        };
        let mut journeys: Vec<Journey> = (0..300).map(|_| new_journey(&mut rng)).collect();
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            seq += if rng.chance(2) { 2 + rng.below(40) as i64 } else { 1 };
            clock += rng.below(3000) as i64;
            let j = rng.below(journeys.len() as u64) as usize;
            let standalone = rng.chance(3);
            let journey = &mut journeys[j];
            let id = rng.uuid();
            let event_type = if standalone { "com.shop.catalog.viewed" } else { TYPES[journey.step % TYPES.len()] };
            let source = rng.pick(SOURCES);
            let time = time_string(clock);
            let received_at = time_string(clock + rng.below(250_000) as i64);
            let (correlation, causation) = if standalone { (None, None) } else { (Some(journey.correlation.clone()), journey.last_id.clone()) };
            let subject = if standalone { None } else { journey.subject.clone() };
            let items: Vec<String> = (0..1 + rng.below(2))
                .map(|_| {
                    format!(
                        r#"{{"sku":"SKU-{:05}","qty":{},"unitPrice":"{}.{:02}"}}"#,
                        rng.below(40_000),
                        1 + rng.below(4),
                        2 + rng.below(180),
                        rng.below(100)
                    )
                })
                .collect();
            let mut envelope = format!(r#"{{"specversion":"1.0","id":"{id}","source":"{source}","type":"{event_type}","time":"{time}""#);
            if let Some(s) = &subject {
                envelope += &format!(r#","subject":"{s}""#);
            }
            envelope += r#","datacontenttype":"application/json""#;
            if let Some(c) = &correlation {
                envelope += &format!(r#","correlationid":"{c}""#);
            }
            if let Some(c) = &causation {
                envelope += &format!(r#","causationid":"{c}""#);
            }
            if let Some(t) = &journey.trace {
                envelope += &format!(r#","traceparent":"00-{t}-{}-01""#, rng.hex(16));
            }
            envelope += &format!(
                r#","data":{{"orderId":"{}","customerId":"{}","amount":{{"value":"{}.{:02}","currency":"{}"}},"items":[{}],"shipping":"{}","channel":"{}"}}}}"#,
                subject.as_deref().unwrap_or("none"),
                journey.customer,
                5 + rng.below(900),
                rng.below(100),
                journey.currency,
                items.join(","),
                rng.pick(&["standard", "express", "pickup"]),
                rng.pick(&["web", "ios", "android", "pos"]),
            );
            let kafka = rng.chance(60);
            let partition = rng.below(12) as usize;
            offsets[partition] += 1;
            rows.push(SealedRow {
                seq,
                event_id: id.clone(),
                source: source.to_string(),
                event_type: event_type.to_string(),
                correlation_id: correlation,
                causation_id: causation,
                subject,
                time,
                topic: (!rng.chance(20)).then(|| rng.pick(&["orders", "payments", "fulfilment"]).to_string()),
                received_at: received_at.clone(),
                redeliveries: if rng.chance(1) { 1 + rng.below(3) as i64 } else { 0 },
                envelope,
                partition: kafka.then_some(partition as i64),
                offset: kafka.then_some(offsets[partition]),
                message_time: kafka.then_some(received_at),
            });
            if !standalone {
                journey.last_id = Some(id);
                journey.step += 1;
                if journey.step == journey.steps {
                    journeys[j] = new_journey(&mut rng);
                }
            }
        }
        rows
    }

    /// A file of version 2 (before the lineage columns) reads as before; a segment whose times are
    /// not all canonical has no columns and reads the same from its blocks.
    #[test]
    fn version_2_files_and_segments_without_columns_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let rows = generate(2_000, 11);
        let v2 = dir.path().join("v2.seg");
        write_segment_version(&v2, rows.clone(), VERSION_2).unwrap();
        let seg = Segment::open(&v2).unwrap();
        assert_eq!(u16::from_le_bytes([seg.map[6], seg.map[7]]), VERSION_2);
        assert!(!seg.has_lineage_columns() && seg.may_contain_event_type("NoSuchType"));
        assert_eq!((seg.event_type_at(0), seg.time_at(0)), (None, None));
        for (pos, row) in rows.iter().enumerate() {
            assert_eq!(&seg.row(pos as u32).unwrap(), row, "row {pos}");
        }
        seg.verify().unwrap();

        let mut odd = rows.clone();
        odd[1_000].time = "2026-11-23T10:00:00Z".into(); // not the canonical six digits
        let path = dir.path().join("odd.seg");
        write_segment(&path, odd.clone()).unwrap();
        let seg = Segment::open(&path).unwrap();
        assert!(!seg.has_lineage_columns());
        assert_eq!(seg.row(1_000).unwrap().time, "2026-11-23T10:00:00Z");
        // A damaged column section is refused at open.
        write_segment(&path, rows.clone()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let seg = Segment::open(&path).unwrap();
        let at = seg.sections.columns.clone().unwrap().start + 5;
        drop(seg);
        bytes[at] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(Segment::open(&path).is_err());
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seg");
        let rows = generate(10_000, 7);
        let info = write_segment(&path, rows.clone()).unwrap();
        let seg = Segment::open(&path).unwrap();
        assert_eq!(seg.info(), &info);
        assert_eq!((info.first_seq, info.last_seq, info.rows), (rows[0].seq, rows[9_999].seq, 10_000));
        assert_eq!(info.raw_bytes, rows.iter().map(|r| r.envelope.len() as u64).sum::<u64>());
        assert_eq!(info.min_time, rows.iter().map(|r| r.time.clone()).min().unwrap());
        assert_eq!(info.max_received_at, rows.iter().map(|r| r.received_at.clone()).max().unwrap());
        assert_eq!(seg.len(), rows.len());
        for (pos, row) in rows.iter().enumerate() {
            assert_eq!(&seg.row(pos as u32).unwrap(), row, "row {pos}");
            assert_eq!(seg.row_attributes(pos as u32).unwrap(), SealedRow { envelope: String::new(), ..row.clone() }, "row {pos}");
        }
        assert!(seg.row(10_000).is_err() && seg.row_attributes(10_000).is_err());
        seg.verify().unwrap();
        // The lineage columns give each row's type and time without a block.
        assert!(seg.has_lineage_columns());
        for (pos, row) in rows.iter().enumerate() {
            assert_eq!(seg.event_type_at(pos as u32), Some(row.event_type.as_str()), "row {pos}");
            assert_eq!(seg.time_at(pos as u32).as_deref(), Some(row.time.as_str()), "row {pos}");
        }
        assert!(seg.may_contain_event_type(&rows[0].event_type) && !seg.may_contain_event_type("NoSuchType"));
        assert_eq!((seg.event_type_at(10_000), seg.time_at(10_000)), (None, None));

        for key in Key::ALL {
            let mut expected: HashMap<&str, Vec<u32>> = HashMap::new();
            for (pos, row) in rows.iter().enumerate() {
                if let Some(v) = key.of(row) {
                    expected.entry(v).or_default().push(pos as u32);
                }
            }
            assert!(expected.len() > 500, "{key:?}: {} values", expected.len());
            for (value, positions) in &expected {
                assert_eq!(&seg.find(key, value).unwrap(), positions, "{key:?} {value}");
                assert!(seg.may_contain(key, value), "{key:?} {value}: a stored id passes its filter");
            }
            let absent = (0..1_000).filter(|i| seg.may_contain(key, &format!("absent-{i}"))).count();
            assert!(absent < 20, "{key:?}: {absent} of 1000 absent ids pass the filter");
            // None columns are never matched, absent values find nothing.
            for absent in ["", "none", "00000000-0000-4000-8000-000000000000", "order-1"] {
                assert!(seg.find(key, absent).unwrap().is_empty(), "{key:?} {absent:?}");
            }
        }
        assert!(rows.iter().any(|r| r.subject.is_none() && r.correlation_id.is_none() && r.causation_id.is_none()));
        for row in &rows {
            assert!(seg.may_contain_event_id(&row.event_id));
        }
        let false_positives = (0..10_000).filter(|i| seg.may_contain_event_id(&format!("absent-{i}"))).count();
        assert!(false_positives < 100, "{false_positives} false positives in 10,000");

        // Seqs, gaps included.
        let mut next = 0;
        for probe in rows[0].seq - 3..=rows[9_999].seq + 3 {
            while next < rows.len() && rows[next].seq < probe {
                next += 1;
            }
            let at = (next < rows.len() && rows[next].seq == probe).then_some(next as u32);
            assert_eq!(seg.position_of_seq(probe).unwrap(), at, "seq {probe}");
            assert_eq!(seg.lower_bound_seq(probe), next as u32, "seq {probe}");
        }
        assert!(rows.windows(2).any(|w| w[1].seq - w[0].seq > 1), "the data has gaps");
        assert_eq!(seg.lower_bound_seq(i64::MIN), 0);
        assert_eq!(seg.lower_bound_seq(i64::MAX), 10_000);

        // Time pruning keeps every row in range, and prunes.
        let (from, to) = (rows[3_000].time.clone(), rows[3_400].time.clone());
        for (f, t) in [(Some(from.as_str()), Some(to.as_str())), (Some(from.as_str()), None), (None, Some(to.as_str())), (None, None)] {
            let ranges = seg.positions_maybe_in_time(f, t);
            let covered = |p: u32| ranges.iter().any(|r| r.contains(&p));
            for (pos, row) in rows.iter().enumerate() {
                if f.is_none_or(|f| row.time.as_str() >= f) && t.is_none_or(|t| row.time.as_str() <= t) {
                    assert!(covered(pos as u32), "row {pos} in [{f:?}, {t:?}] not covered");
                }
            }
        }
        let narrow: usize = seg.positions_maybe_in_time(Some(&from), Some(&to)).iter().map(|r| r.len()).sum();
        assert!(narrow < 1_000, "{narrow} rows kept for 400");
        assert!(seg.positions_maybe_in_time(Some("2099"), None).is_empty());
    }

    #[test]
    fn small_segments_and_odd_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = generate(3, 1);
        // Envelope bytes that look like escapes, values inside values, empty strings.
        rows[0].envelope = format!("\u{1}{}\u{7}{}", rows[0].event_id, rows[0].time);
        rows[1].subject = Some(rows[1].event_id[..8].to_string());
        rows[1].causation_id = Some(String::new());
        rows[2].envelope = format!("{0}{0}{1}ü{0}", rows[2].event_id, rows[2].source);
        rows[2].partition = Some(i64::MIN);
        rows[2].offset = Some(i64::MAX);
        for n in 1..=3 {
            let path = dir.path().join(format!("{n}.seg"));
            write_segment(&path, rows[..n].to_vec()).unwrap();
            let seg = Segment::open(&path).unwrap();
            for (pos, row) in rows[..n].iter().enumerate() {
                assert_eq!(&seg.row(pos as u32).unwrap(), row);
                assert_eq!(seg.row_attributes(pos as u32).unwrap(), SealedRow { envelope: String::new(), ..row.clone() });
                assert_eq!(seg.find(Key::EventId, &row.event_id).unwrap(), vec![pos as u32]);
                assert!(seg.may_contain_event_id(&row.event_id));
            }
            assert!(!seg.may_contain_event_id("nope"));
        }
        let seg = Segment::open(&dir.path().join("3.seg")).unwrap();
        assert_eq!(seg.find(Key::CausationId, "").unwrap(), vec![1]);
    }

    #[test]
    fn bad_input_and_damaged_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seg");
        assert!(matches!(write_segment(&path, Vec::new()), Err(StoreError::Segment { .. })));
        let mut rows = generate(2_000, 3);
        rows.swap(10, 11);
        assert!(matches!(write_segment(&path, rows.clone()), Err(StoreError::Segment { .. })));
        rows.swap(10, 11);
        rows[11].seq = rows[10].seq;
        assert!(write_segment(&path, rows.clone()).is_err());
        assert!(!path.exists());
        assert!(matches!(write_segment(&dir.path().join("no/such/dir.seg"), generate(5, 1)), Err(StoreError::Io { .. })));

        let rows = generate(2_000, 3);
        write_segment(&path, rows).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no .tmp left behind");
        let good = std::fs::read(&path).unwrap();
        let try_open = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            Segment::open(&path).map(|_| ())
        };
        try_open(&good).unwrap();
        for cut in [1, 9, 100, good.len() / 2, good.len() - 8] {
            let err = try_open(&good[..good.len() - cut]).unwrap_err();
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        }
        // One byte flipped anywhere the checksum covers: footer, directory, strings, filter, dictionary, header.
        let len = good.len();
        for at in [len - 1, len - 12, len - 20, len - 100, len - 2_000, len - 6_000, 5, 7, 20, 1_000] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(try_open(&bad).is_err(), "byte {at} of {len} flipped");
        }
        // A flipped byte in a block's frame is caught by zstd's checksum when that frame is read.
        try_open(&good).unwrap();
        let seg = Segment::open(&path).unwrap();
        let frames = seg.entry(3).frames;
        let (first, last) = (seg.block_range(3).start, seg.block_range(3).end - 1);
        let id = seg.row(first).unwrap().event_id;
        drop(seg);
        for kind in [ATTRIBUTES, ENVELOPES] {
            let mut bad = good.clone();
            bad[frames[kind].start + frames[kind].len() / 2] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let seg = Segment::open(&path).unwrap();
            assert!(seg.verify().is_err(), "frame {kind}");
            assert!(seg.row(first).is_err() && seg.row(last).is_err(), "frame {kind}");
            assert!(seg.row(0).is_ok() && seg.row_attributes(0).is_ok(), "frame {kind}");
            // Attributes alone never read the envelopes frame.
            let attributes_ok = kind == ENVELOPES;
            assert_eq!(seg.row_attributes(first).is_ok() && seg.row_attributes(last).is_ok(), attributes_ok, "frame {kind}");
            assert_eq!(seg.find(Key::EventId, &id).is_ok(), attributes_ok, "frame {kind}");
        }
    }

    #[test]
    fn shareable_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<Segment>();
    }

    /// Size and speed on a segment of 100,000 rows; run with `--nocapture` for the numbers.
    #[test]
    fn size_and_speed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.seg");
        let rows = generate(100_000, 11);
        let started = Instant::now();
        let info = write_segment(&path, rows.clone()).unwrap();
        let write = started.elapsed();
        let started = Instant::now();
        let seg = Segment::open(&path).unwrap();
        let open = started.elapsed();
        let ratio = info.file_bytes as f64 / info.raw_bytes as f64;
        println!(
            "100,000 rows: envelope {:.0} B/row, file {:.1} B/row, file/raw {ratio:.3}; write {write:.2?}, open {open:.2?}",
            info.raw_bytes as f64 / 1e5,
            info.file_bytes as f64 / 1e5
        );
        let s = &seg.sections;
        let per_row = |r: &Range<usize>| r.len() as f64 / 1e5;
        println!(
            "  per row: attributes {:.1} + envelopes {:.1} frames, indexes {:.1}, seqs {:.2}, filter {:.2}, directory+strings {:.2}, dictionaries {:.2} + {:.2} ({} blocks)",
            per_row(&s.frames[ATTRIBUTES]),
            per_row(&s.frames[ENVELOPES]),
            s.indexes.iter().map(per_row).sum::<f64>(),
            per_row(&s.seqs),
            per_row(&s.filter),
            per_row(&s.directory) + per_row(&s.strings),
            per_row(&s.dicts[ATTRIBUTES]),
            per_row(&s.dicts[ENVELOPES]),
            seg.n_blocks
        );
        let decoded = |kind: usize| (0..seg.n_blocks).map(|b| seg.entry(b).decoded_lens[kind]).sum::<usize>() as f64 / 1e5;
        println!("  decoded per row: attributes {:.1}, envelopes {:.1}", decoded(ATTRIBUTES), decoded(ENVELOPES));
        assert!(ratio <= 0.45, "file/raw {ratio:.3}");

        let mut rng = Rng(5);
        let probes: Vec<usize> = (0..2_000).map(|_| rng.below(100_000) as usize).collect();
        let started = Instant::now();
        for &p in &probes {
            assert!(
                !seg.find(Key::CorrelationId, rows[p].correlation_id.as_deref().unwrap_or("x")).unwrap().is_empty()
                    || rows[p].correlation_id.is_none()
            );
        }
        let by_correlation = started.elapsed() / probes.len() as u32;
        let started = Instant::now();
        for &p in &probes {
            assert_eq!(seg.find(Key::EventId, &rows[p].event_id).unwrap(), vec![p as u32]);
        }
        let by_id = started.elapsed() / probes.len() as u32;
        let started = Instant::now();
        for &p in &probes {
            assert_eq!(seg.row(p as u32).unwrap().seq, rows[p].seq);
        }
        let row = started.elapsed() / probes.len() as u32;
        let started = Instant::now();
        let absent = (0..100_000).filter(|i| seg.may_contain_event_id(&format!("absent-{i}"))).count();
        let probe = started.elapsed() / 100_000;
        // A full scan, in order, each way (fresh segments: nothing cached).
        let scan = |f: &dyn Fn(&Segment, u32) -> SealedRow| {
            let seg = Segment::open(&path).unwrap();
            let started = Instant::now();
            for pos in 0..seg.len() as u32 {
                std::hint::black_box(f(&seg, pos));
            }
            started.elapsed().as_secs_f64() * 1e6 / seg.len() as f64
        };
        let scan_rows = scan(&|seg, pos| seg.row(pos).unwrap());
        let scan_attributes = scan(&|seg, pos| seg.row_attributes(pos).unwrap());
        println!("  full scan: row() {scan_rows:.3} µs/row, row_attributes() {scan_attributes:.3} µs/row");
        println!(
            "  find(correlation) {by_correlation:.1?}, find(event_id) {by_id:.1?}, random row() {row:.1?}, filter probe {probe:.1?} ({absent} false positives in 100,000)"
        );
    }
}
