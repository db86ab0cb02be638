//! SQLite's functions whose one call could outlast the time limit, replaced on users' connections.
//!
//! `sqlite3_interrupt` is noticed between VM steps, never inside a function call, and a few
//! built-ins do work that grows as the product of their inputs' sizes: `instr`, `replace`, and the
//! two-argument `trim`, `ltrim`, `rtrim` and `unhex` compare the needle or the character set at
//! every position (measured: one `instr` over 1 MB took 6 s), and `like` and `glob` backtrack over
//! their pattern (one call: 52 s and 72 s). Here `instr` and `replace` search with
//! Knuth–Morris–Pratt, the character sets are looked up in tables, all linear; `like` and `glob`
//! keep SQLite's algorithm and read the cancel flag of [`Bounds`] as they go, so they stop at the
//! query's deadline.
//!
//! Each replacement answers what the built-in answers, byte for byte, for every argument type
//! (numbers as SQLite's text, blobs as their bytes, `NUL` ending a string where SQLite's C strings
//! end it); `tests/sql_functions.rs` compares them with the built-ins over random arguments.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ffi};

/// The longest LIKE or GLOB pattern, in bytes (SQLite's default is 50,000). The match recurses
/// once per wildcard, so this also bounds its stack.
pub const MAX_LIKE_PATTERN_BYTES: usize = 1000;

/// What a running query's replaced functions share with the watchdog.
#[derive(Default)]
pub(crate) struct Bounds {
    /// Set at the query's deadline.
    pub(crate) cancelled: AtomicBool,
    /// The most bytes one value may hold (the connection's `SQLITE_LIMIT_LENGTH`).
    pub(crate) max_value: AtomicUsize,
    /// Renders reals as SQLite's text, on a connection of its own (opened when first needed).
    real_text: Mutex<Option<Connection>>,
}

impl Bounds {
    fn check(&self) -> rusqlite::Result<()> {
        if self.cancelled.load(Ordering::Relaxed) { Err(interrupted()) } else { Ok(()) }
    }
}

fn interrupted() -> rusqlite::Error {
    // No message: with one, SQLite would report a plain SQLITE_ERROR instead of the code.
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_INTERRUPT), None)
}

fn too_big() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_TOOBIG), None)
}

fn error(message: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_ERROR), Some(message.into()))
}

/// Replaces the functions on `conn`; the returned bounds are the ones [`super::watchdog`] sets.
pub(crate) fn install(conn: &mut Connection) -> rusqlite::Result<Arc<Bounds>> {
    let bounds = Arc::new(Bounds::default());
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS;
    let b = bounds.clone();
    conn.create_scalar_function("instr", 2, flags, move |ctx| instr(ctx, &b))?;
    let b = bounds.clone();
    conn.create_scalar_function("replace", 3, flags, move |ctx| replace(ctx, &b))?;
    for (name, sides) in [("trim", BOTH), ("ltrim", LEFT), ("rtrim", RIGHT)] {
        let b = bounds.clone();
        conn.create_scalar_function(name, 2, flags, move |ctx| trim(ctx, &b, sides))?;
    }
    let b = bounds.clone();
    conn.create_scalar_function("unhex", 2, flags, move |ctx| unhex(ctx, &b))?;
    for n_arg in [2, 3] {
        let b = bounds.clone();
        conn.create_scalar_function("like", n_arg, flags, move |ctx| like(ctx, &b, LIKE))?;
    }
    let b = bounds.clone();
    conn.create_scalar_function("glob", 2, flags, move |ctx| like(ctx, &b, GLOB))?;
    Ok(bounds)
}

/// Text handed back as raw bytes: SQLite's results need not be UTF-8.
struct Text(Vec<u8>);

impl ToSql for Text {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(&self.0)))
    }
}

/// An argument as `sqlite3_value_text` reads it (`None` for NULL).
fn text<'a>(ctx: &'a Context<'_>, i: usize, bounds: &Bounds) -> rusqlite::Result<Option<Cow<'a, [u8]>>> {
    Ok(match ctx.get_raw(i) {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(Cow::Owned(n.to_string().into_bytes())),
        ValueRef::Real(r) => Some(Cow::Owned(real_text(bounds, r)?.into_bytes())),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(Cow::Borrowed(t)),
    })
}

fn real_text(bounds: &Bounds, r: f64) -> rusqlite::Result<String> {
    let mut conn = bounds.real_text.lock().expect("real text connection lock");
    if conn.is_none() {
        *conn = Some(Connection::open_in_memory()?);
    }
    let conn = conn.as_ref().expect("opened above");
    conn.prepare_cached("SELECT CAST(?1 AS TEXT)")?.query_row([r], |row| row.get(0))
}

/// The bytes up to the first NUL, where SQLite's C-string loops stop.
fn c_str(bytes: &[u8]) -> &[u8] {
    bytes.iter().position(|&b| b == 0).map_or(bytes, |n| &bytes[..n])
}

/// Where `needle` (not empty) first occurs in `hay` at or after `from`, in linear time.
struct Finder<'a> {
    needle: &'a [u8],
    /// Knuth–Morris–Pratt failure function: the longest proper border of each prefix.
    border: Vec<u32>,
}

impl<'a> Finder<'a> {
    fn new(needle: &'a [u8]) -> Self {
        let mut border = vec![0u32; needle.len()];
        let mut k = 0usize;
        for i in 1..needle.len() {
            while k > 0 && needle[i] != needle[k] {
                k = border[k - 1] as usize;
            }
            if needle[i] == needle[k] {
                k += 1;
            }
            border[i] = k as u32;
        }
        Finder { needle, border }
    }

    fn find(&self, hay: &[u8], from: usize, bounds: &Bounds) -> rusqlite::Result<Option<usize>> {
        let (needle, m) = (self.needle, self.needle.len());
        let mut k = 0usize;
        let mut i = from;
        while i < hay.len() {
            if i.is_multiple_of(1 << 16) {
                bounds.check()?;
            }
            // Skip ahead to the next possible start while nothing is matched.
            if k == 0 {
                match hay[i..].iter().position(|&b| b == needle[0]) {
                    Some(n) => i += n,
                    None => return Ok(None),
                }
            }
            while k > 0 && hay[i] != needle[k] {
                k = self.border[k - 1] as usize;
            }
            if hay[i] == needle[k] {
                k += 1;
                if k == m {
                    return Ok(Some(i + 1 - m));
                }
            }
            i += 1;
        }
        Ok(None)
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

/// `instr(X, Y)`: the 1-based position of the first `Y` in `X` — in bytes when both are blobs,
/// else in characters — or 0.
fn instr(ctx: &Context<'_>, bounds: &Bounds) -> rusqlite::Result<Option<i64>> {
    let both_blobs = matches!((ctx.get_raw(0), ctx.get_raw(1)), (ValueRef::Blob(_), ValueRef::Blob(_)));
    let (Some(hay), Some(needle)) = (text(ctx, 0, bounds)?, text(ctx, 1, bounds)?) else {
        return Ok(None);
    };
    if needle.is_empty() {
        return Ok(Some(1));
    }
    // SQLite tries position 0, then (in text) each later position that starts a character. A
    // needle starting with a continuation byte can match nowhere else; any other matches only
    // where a character starts.
    let at =
        if !both_blobs && is_continuation(needle[0]) { hay.starts_with(&needle).then_some(0) } else { Finder::new(&needle).find(&hay, 0, bounds)? };
    Ok(Some(match at {
        None => 0,
        Some(p) if both_blobs => p as i64 + 1,
        Some(0) => 1,
        // Position 0, then each character start before `p`, then `p`.
        Some(p) => 2 + hay[1..p].iter().filter(|&&b| !is_continuation(b)).count() as i64,
    }))
}

/// `replace(X, Y, Z)`: `X` with every `Y` (left to right, not overlapping) replaced by `Z`, as text.
fn replace(ctx: &Context<'_>, bounds: &Bounds) -> rusqlite::Result<Option<Text>> {
    let Some(s) = text(ctx, 0, bounds)? else {
        return Ok(None);
    };
    let Some(pattern) = text(ctx, 1, bounds)? else {
        return Ok(None);
    };
    if pattern.first().is_none_or(|&b| b == 0) {
        return Ok(Some(Text(s.into_owned())));
    }
    let Some(rep) = text(ctx, 2, bounds)? else {
        return Ok(None);
    };
    let finder = Finder::new(&pattern);
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(at) = finder.find(&s, from, bounds)? {
        starts.push(at);
        from = at + pattern.len();
    }
    let len = s.len() as u128 + starts.len() as u128 * rep.len() as u128 - starts.len() as u128 * pattern.len() as u128;
    if len > bounds.max_value.load(Ordering::Relaxed) as u128 {
        return Err(too_big());
    }
    let mut out = Vec::with_capacity(len as usize);
    let mut last = 0;
    for at in starts {
        out.extend_from_slice(&s[last..at]);
        out.extend_from_slice(&rep);
        last = at + pattern.len();
    }
    out.extend_from_slice(&s[last..]);
    Ok(Some(Text(out)))
}

const LEFT: u8 = 1;
const RIGHT: u8 = 2;
const BOTH: u8 = 3;

/// `trim(X, Y)`, `ltrim(X, Y)`, `rtrim(X, Y)`: `X` without the characters of `Y` at its ends.
/// When several characters of `Y` match at an end (possible only in invalid UTF-8), the first in
/// `Y` wins, as in SQLite.
fn trim(ctx: &Context<'_>, bounds: &Bounds, sides: u8) -> rusqlite::Result<Option<Text>> {
    if matches!(ctx.get_raw(0), ValueRef::Null) {
        return Ok(None);
    }
    let Some(input) = text(ctx, 0, bounds)? else {
        return Ok(None);
    };
    let Some(set) = text(ctx, 1, bounds)? else {
        return Ok(None);
    };
    let set = c_str(&set);
    // The characters of the set as SQLite splits them: a byte, and after a lead byte (0xc0 and
    // up) every continuation byte that follows.
    let mut chars: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    while i < set.len() {
        if chars.len().is_multiple_of(1 << 16) {
            bounds.check()?;
        }
        let start = i;
        i += 1;
        if set[start] >= 0xc0 {
            while i < set.len() && is_continuation(set[i]) {
                i += 1;
            }
        }
        chars.push(&set[start..i]);
    }
    let (mut start, mut end) = (0, input.len());
    if chars.iter().all(|c| c.len() == 1) {
        let mut table = [false; 256];
        for c in &chars {
            table[c[0] as usize] = true;
        }
        if sides & LEFT != 0 {
            while start < end && table[input[start] as usize] {
                start += 1;
                if start.is_multiple_of(1 << 16) {
                    bounds.check()?;
                }
            }
        }
        if sides & RIGHT != 0 {
            while start < end && table[input[end - 1] as usize] {
                end -= 1;
                if end.is_multiple_of(1 << 16) {
                    bounds.check()?;
                }
            }
        }
    } else {
        let mut first: HashMap<&[u8], usize> = HashMap::new();
        for (n, c) in chars.iter().enumerate() {
            first.entry(c).or_insert(n);
        }
        let mut lengths: Vec<usize> = chars.iter().map(|c| c.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        if sides & LEFT != 0 {
            while start < end {
                bounds.check()?;
                let Some(len) = first_char(&first, &lengths, end - start, |len| &input[start..start + len]) else {
                    break;
                };
                start += len;
            }
        }
        if sides & RIGHT != 0 {
            while start < end {
                bounds.check()?;
                let Some(len) = first_char(&first, &lengths, end - start, |len| &input[end - len..end]) else {
                    break;
                };
                end -= len;
            }
        }
    }
    Ok(Some(Text(input[start..end].to_vec())))
}

/// The length of the first character of the set (`first`: each character's first index) that
/// `window(len)` holds, trying each length of `lengths` (ascending) up to `room`.
fn first_char<'a>(first: &HashMap<&[u8], usize>, lengths: &[usize], room: usize, window: impl Fn(usize) -> &'a [u8]) -> Option<usize> {
    lengths.iter().take_while(|&&len| len <= room).filter_map(|&len| first.get(window(len)).map(|&n| (n, len))).min().map(|(_, len)| len)
}

/// Reads one character as `sqlite3Utf8Read` does, from a C string (0 at its end; the position
/// moves past it).
fn utf8_read(s: &[u8], i: &mut usize) -> u32 {
    const TRANS1: [u8; 64] = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
        0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
        0x0e, 0x0f, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x00, 0x01, 0x02, 0x03, 0x00, 0x01, 0x00, 0x00,
    ];
    let mut c = u32::from(at(s, *i));
    *i += 1;
    if c >= 0xc0 {
        c = u32::from(TRANS1[(c - 0xc0) as usize]);
        while is_continuation(at(s, *i)) {
            c = (c << 6) + u32::from(0x3f & at(s, *i));
            *i += 1;
        }
        if c < 0x80 || (c & 0xFFFF_F800) == 0xD800 {
            c = 0xFFFD;
        }
    }
    c
}

/// The byte at `i` of a C string: 0 at and past its end.
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// `unhex(X, Y)`: the blob `X` spells in hex digits, skipping the characters of `Y` between pairs
/// of digits; NULL if `X` holds anything else.
fn unhex(ctx: &Context<'_>, bounds: &Bounds) -> rusqlite::Result<Option<Vec<u8>>> {
    let (Some(hex), Some(pass)) = (text(ctx, 0, bounds)?, text(ctx, 1, bounds)?) else {
        return Ok(None);
    };
    let hex = c_str(&hex);
    // SQLite reads every character of Y, NULs too, within its length.
    let mut skip = std::collections::HashSet::new();
    let mut ascii = [false; 128];
    let mut i = 0;
    while i < pass.len() {
        if i.is_multiple_of(1 << 16) {
            bounds.check()?;
        }
        match utf8_read(&pass, &mut i) {
            c @ 0..0x80 => ascii[c as usize] = true,
            c => {
                skip.insert(c);
            }
        }
    }
    let skipped = |c: u32| {
        if c < 0x80 { ascii[c as usize] } else { skip.contains(&c) }
    };
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(hex.len() / 2 + 1);
    let mut i = 0;
    let mut steps = 0u32;
    while at(hex, i) != 0 {
        let mut c = at(hex, i);
        while digit(c).is_none() {
            steps = steps.wrapping_add(1);
            if steps.is_multiple_of(1 << 16) {
                bounds.check()?;
            }
            if !skipped(utf8_read(hex, &mut i)) {
                return Ok(None);
            }
            c = at(hex, i);
            if c == 0 {
                return Ok(Some(out));
            }
        }
        i += 1;
        let d = at(hex, i);
        i += 1;
        let (Some(high), Some(low)) = (digit(c), digit(d)) else {
            return Ok(None);
        };
        out.push(high << 4 | low);
    }
    Ok(Some(out))
}

/// The wildcards of LIKE or GLOB (SQLite's `compareInfo`).
#[derive(Clone, Copy)]
struct Wildcards {
    all: u32,
    one: u32,
    set: u32,
    no_case: bool,
}

const LIKE: Wildcards = Wildcards { all: '%' as u32, one: '_' as u32, set: 0, no_case: true };
const GLOB: Wildcards = Wildcards { all: '*' as u32, one: '?' as u32, set: '[' as u32, no_case: false };

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Match,
    NoMatch,
    /// No match, and none at any later start either (SQLite's `SQLITE_NOWILDCARDMATCH`).
    NoWildcardMatch,
}

/// `like(P, S [, E])` and `glob(P, S)`: SQLite's `likeFunc`.
fn like(ctx: &Context<'_>, bounds: &Bounds, mut w: Wildcards) -> rusqlite::Result<Option<bool>> {
    let pattern_bytes = match ctx.get_raw(0) {
        ValueRef::Null => 0,
        _ => text(ctx, 0, bounds)?.map_or(0, |p| p.len()),
    };
    if pattern_bytes > MAX_LIKE_PATTERN_BYTES {
        return Err(error(&format!("a LIKE or GLOB pattern may be at most {MAX_LIKE_PATTERN_BYTES} bytes; this one has {pattern_bytes}")));
    }
    let escape = if ctx.len() == 3 {
        let Some(e) = text(ctx, 2, bounds)? else {
            return Ok(None);
        };
        let e = c_str(&e);
        let mut i = 0;
        let mut chars = 0;
        while i < e.len() {
            i += if e[i] >= 0xc0 { 1 + e[i + 1..].iter().take_while(|&&b| is_continuation(b)).count() } else { 1 };
            chars += 1;
        }
        if chars != 1 {
            return Err(error("ESCAPE expression must be a single character"));
        }
        let escape = utf8_read(e, &mut 0);
        if escape == w.all {
            w.all = 0;
        }
        if escape == w.one {
            w.one = 0;
        }
        escape
    } else {
        w.set
    };
    let (Some(pattern), Some(string)) = (text(ctx, 0, bounds)?, text(ctx, 1, bounds)?) else {
        return Ok(None);
    };
    let mut m = Matcher { w, bounds, steps: 0 };
    Ok(Some(m.compare(c_str(&pattern), 0, c_str(&string), 0, escape)? == Outcome::Match))
}

struct Matcher<'a> {
    w: Wildcards,
    bounds: &'a Bounds,
    steps: u32,
}

impl Matcher<'_> {
    /// Counts a step; every 4,096th reads the cancel flag.
    fn step(&mut self) -> rusqlite::Result<()> {
        self.steps = self.steps.wrapping_add(1);
        if self.steps.is_multiple_of(4096) { self.bounds.check() } else { Ok(()) }
    }

    /// SQLite's `patternCompare`, on C strings given as slices and positions.
    fn compare(&mut self, p: &[u8], mut pi: usize, s: &[u8], mut si: usize, other: u32) -> rusqlite::Result<Outcome> {
        let Wildcards { all, one, set, no_case } = self.w;
        // Just past the last escaped pattern character (SQLite's `zEscaped`).
        let mut escaped: Option<usize> = None;
        loop {
            self.step()?;
            let mut c = utf8_read(p, &mut pi);
            if c == 0 {
                break;
            }
            if c == all {
                loop {
                    c = utf8_read(p, &mut pi);
                    if !(c == all || (c == one && one != 0)) {
                        break;
                    }
                    if c == one && utf8_read(s, &mut si) == 0 {
                        return Ok(Outcome::NoWildcardMatch);
                    }
                }
                if c == 0 {
                    return Ok(Outcome::Match);
                } else if c == other {
                    if set == 0 {
                        c = utf8_read(p, &mut pi);
                        if c == 0 {
                            return Ok(Outcome::NoWildcardMatch);
                        }
                    } else {
                        while at(s, si) != 0 {
                            let r = self.compare(p, pi - 1, s, si, other)?;
                            if r != Outcome::NoMatch {
                                return Ok(r);
                            }
                            si += 1;
                            if at(s, si - 1) >= 0xc0 {
                                while is_continuation(at(s, si)) {
                                    si += 1;
                                }
                            }
                        }
                        return Ok(Outcome::NoWildcardMatch);
                    }
                }
                if c < 0x80 {
                    let (upper, lower) =
                        if no_case { (u32::from((c as u8).to_ascii_uppercase()), u32::from((c as u8).to_ascii_lowercase())) } else { (c, c) };
                    loop {
                        while at(s, si) != 0 && u32::from(at(s, si)) != upper && u32::from(at(s, si)) != lower {
                            si += 1;
                        }
                        if at(s, si) == 0 {
                            break;
                        }
                        si += 1;
                        let r = self.compare(p, pi, s, si, other)?;
                        if r != Outcome::NoMatch {
                            return Ok(r);
                        }
                    }
                } else {
                    loop {
                        let c2 = utf8_read(s, &mut si);
                        if c2 == 0 {
                            break;
                        }
                        if c2 != c {
                            continue;
                        }
                        let r = self.compare(p, pi, s, si, other)?;
                        if r != Outcome::NoMatch {
                            return Ok(r);
                        }
                    }
                }
                return Ok(Outcome::NoWildcardMatch);
            }
            if c == other {
                if set == 0 {
                    c = utf8_read(p, &mut pi);
                    if c == 0 {
                        return Ok(Outcome::NoMatch);
                    }
                    escaped = Some(pi);
                } else {
                    let mut prior = 0u32;
                    let mut seen = false;
                    let mut invert = false;
                    let c = utf8_read(s, &mut si);
                    if c == 0 {
                        return Ok(Outcome::NoMatch);
                    }
                    let mut c2 = utf8_read(p, &mut pi);
                    if c2 == u32::from(b'^') {
                        invert = true;
                        c2 = utf8_read(p, &mut pi);
                    }
                    if c2 == u32::from(b']') {
                        if c == u32::from(b']') {
                            seen = true;
                        }
                        c2 = utf8_read(p, &mut pi);
                    }
                    while c2 != 0 && c2 != u32::from(b']') {
                        if c2 == u32::from(b'-') && at(p, pi) != b']' && at(p, pi) != 0 && prior > 0 {
                            c2 = utf8_read(p, &mut pi);
                            if c >= prior && c <= c2 {
                                seen = true;
                            }
                            prior = 0;
                        } else {
                            if c == c2 {
                                seen = true;
                            }
                            prior = c2;
                        }
                        c2 = utf8_read(p, &mut pi);
                    }
                    if c2 == 0 || seen == invert {
                        return Ok(Outcome::NoMatch);
                    }
                    continue;
                }
            }
            let c2 = utf8_read(s, &mut si);
            if c == c2 {
                continue;
            }
            if no_case && c < 0x80 && c2 < 0x80 && (c as u8).eq_ignore_ascii_case(&(c2 as u8)) {
                continue;
            }
            if c == one && Some(pi) != escaped && c2 != 0 {
                continue;
            }
            return Ok(Outcome::NoMatch);
        }
        Ok(if at(s, si) == 0 { Outcome::Match } else { Outcome::NoMatch })
    }
}
