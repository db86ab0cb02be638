//! Compact storage for ids and keys, and the hashes the indexes use.
//!
//! Event ids, correlation ids and business keys are the bulk of the engine's memory. A canonical
//! lower-case UUID (the common case) is kept as its 16 bytes, a string of up to 22 bytes inline,
//! anything longer boxed: [`CompactStr`] is 24 bytes either way and allocates only for long
//! non-UUID strings. [`Chunked`] keeps the instances themselves in fixed chunks.
//!
//! The hashes are hand-written so that they mean the same thing across dependency upgrades; they
//! are used for in-memory indexes only (never persisted), except [`Fnv64`], which the digest uses.

use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// A string stored in 24 bytes without allocating for UUIDs and short strings.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum CompactStr {
    Uuid([u8; 16]),
    Inline(u8, [u8; 22]),
    Heap(Box<str>),
}

const _: () = assert!(std::mem::size_of::<CompactStr>() == 24);

impl CompactStr {
    pub fn new(s: &str) -> CompactStr {
        if let Some(u) = parse_uuid(s) {
            return CompactStr::Uuid(u);
        }
        if s.len() <= 22 {
            let mut bytes = [0u8; 22];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            return CompactStr::Inline(s.len() as u8, bytes);
        }
        CompactStr::Heap(s.into())
    }

    /// Whether this is the string `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        self.eq_probe(&Probe::new(s))
    }

    /// Whether this is the probed string: compare many values against one string by parsing it
    /// once.
    pub fn eq_probe(&self, p: &Probe) -> bool {
        match (self, p) {
            (CompactStr::Uuid(u), Probe::Uuid(v, _)) => u == v,
            (CompactStr::Uuid(_), Probe::Str(_)) => false,
            (CompactStr::Inline(n, bytes), p) => eq_bytes(&bytes[..*n as usize], p.as_str().as_bytes()),
            (CompactStr::Heap(h), p) => eq_bytes(h.as_bytes(), p.as_str().as_bytes()),
        }
    }

    /// Heap bytes this value owns beyond its 24 bytes.
    pub fn heap_bytes(&self) -> usize {
        match self {
            CompactStr::Heap(h) => h.len(),
            _ => 0,
        }
    }
}

impl fmt::Display for CompactStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompactStr::Uuid(u) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut out = [0u8; 36];
                let mut o = 0;
                for (i, b) in u.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out[o] = b'-';
                        o += 1;
                    }
                    out[o] = HEX[(b >> 4) as usize];
                    out[o + 1] = HEX[(b & 15) as usize];
                    o += 2;
                }
                f.write_str(std::str::from_utf8(&out).expect("hex is ASCII"))
            }
            CompactStr::Inline(n, bytes) => f.write_str(std::str::from_utf8(&bytes[..*n as usize]).expect("copied from a str")),
            CompactStr::Heap(h) => f.write_str(h),
        }
    }
}

impl fmt::Debug for CompactStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// A string prepared for comparison with [`CompactStr`]s.
pub(crate) enum Probe<'a> {
    Uuid([u8; 16], &'a str),
    Str(&'a str),
}

impl<'a> Probe<'a> {
    pub fn new(s: &'a str) -> Probe<'a> {
        match parse_uuid(s) {
            Some(u) => Probe::Uuid(u, s),
            None => Probe::Str(s),
        }
    }

    pub fn as_str(&self) -> &'a str {
        match self {
            Probe::Uuid(_, s) | Probe::Str(s) => s,
        }
    }
}

/// The 16 bytes of a canonical lower-case UUID (`8-4-4-4-12` hex digits), so that formatting
/// them gives back exactly the same text; `None` for anything else.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b: &[u8; 36] = s.as_bytes().try_into().ok()?;
    if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5], b[at + 6], b[at + 7]]);
    let half = |at: usize| u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]));
    let groups = [word(0), half(9) | (half(14) << 32), half(19) | (half(24) << 32), word(28)];
    let mut out = [0u8; 16];
    let mut ok = true;
    for (k, g) in groups.into_iter().enumerate() {
        let (bytes, valid) = hex8(g);
        ok &= valid;
        out[k * 4..k * 4 + 4].copy_from_slice(&bytes);
    }
    ok.then_some(out)
}

/// Eight lower-case hex digits (as loaded little-endian from text) to four bytes, and whether they
/// were all lower-case hex digits; branch-free (SWAR): every byte is range-checked at once.
#[inline]
fn hex8(x: u64) -> ([u8; 4], bool) {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const fn ones(b: u8) -> u64 {
        0x0101_0101_0101_0101 * b as u64
    }
    // Per byte, for bytes below 0x80: x >= lo and x <= hi, as the byte's top bit.
    let ge = |lo: u8| ((x | HIGH) - ones(lo)) & HIGH;
    let le = |hi: u8| ((ones(hi) | HIGH) - x) & HIGH;
    let digit = ge(b'0') & le(b'9');
    let letter = ge(b'a') & le(b'f');
    let valid = x & HIGH == 0 && (digit | letter) == HIGH;
    // '0'..'9' → 0..9, 'a'..'f' → 10..15.
    let v = (x & ones(0x0F)) + ((x >> 6) & ones(1)) * 9;
    let w = ((v << 4) | (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    ([w as u8, (w >> 16) as u8, (w >> 32) as u8, (w >> 48) as u8], valid)
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// A fast 64-bit hash of a string (word-at-a-time multiply-rotate, then a murmur3 finaliser).
pub(crate) fn hash_str(seed: u64, s: &str) -> u64 {
    fmix64(hash_raw(seed, s))
}

/// [`hash_str`] without its finaliser: for hashes compared whole (all 64 bits), or mixed again by
/// [`mix`] before they index anything. Its low bits are weak (a product's low bits depend only on
/// its factors' low bits): never truncate it.
#[inline]
pub(crate) fn hash_raw(seed: u64, s: &str) -> u64 {
    let bytes = s.as_bytes();
    let n = bytes.len();
    let mut h = seed ^ (n as u64).wrapping_mul(K);
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if n >= 8 {
        let mut at = 0;
        while at + 8 <= n {
            h = (h.rotate_left(23) ^ word(at)).wrapping_mul(K);
            at += 8;
        }
        if at < n {
            // The last 8 bytes, overlapping the previous word (the length is mixed in already).
            h = (h.rotate_left(23) ^ word(n - 8)).wrapping_mul(K);
        }
    } else if n >= 4 {
        let half = |at: usize| u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")));
        h = (h.rotate_left(23) ^ (half(0) | (half(n - 4) << 32))).wrapping_mul(K);
    } else if n > 0 {
        let w = u64::from(bytes[0]) | (u64::from(bytes[n / 2]) << 8) | (u64::from(bytes[n - 1]) << 16);
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    h
}

/// Byte-string equality for short strings, inline (a word at a time) rather than a call to
/// `memcmp`.
#[inline]
pub(crate) fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n > 64 {
        return a == b;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    if n >= 8 {
        let mut at = 0;
        while at + 8 <= n {
            if word(a, at) != word(b, at) {
                return false;
            }
            at += 8;
        }
        return at == n || word(a, n - 8) == word(b, n - 8);
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Mixes two words into one well-distributed word.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    fmix64(a.wrapping_mul(K) ^ b.rotate_left(32))
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// A hasher for keys that are already well-mixed `u64`s: it passes them through.
#[derive(Default, Clone, Copy)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(K);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type U64Map<V> = std::collections::HashMap<u64, V, BuildHasherDefault<PassThrough>>;
pub(crate) type U64Set = std::collections::HashSet<u64, BuildHasherDefault<PassThrough>>;

/// A vector in fixed chunks of 1,024: growing never copies what is stored, and at most one chunk
/// is allocated ahead (a plain `Vec` of a million instances keeps up to as many again in slack).
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

const CHUNK: usize = 1024;

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked { chunks: Vec::new(), len: 0 }
    }
}

impl<T> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, value: T) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut().expect("a chunk").push(value);
        self.len += 1;
    }

    /// Heap bytes held by the chunks themselves.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<T>() + self.chunks.capacity() * std::mem::size_of::<Vec<T>>()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// FNV-1a, 64 bits: stable across versions and platforms, for the digest.
#[derive(Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }

    pub fn hash(bytes: &[u8]) -> u64 {
        let mut h = Fnv64::default();
        h.write(bytes);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_strings_round_trip() {
        for s in [
            "",
            "e1",
            "ord-000001",
            "0123456789abcdefghijkl",
            "0123456789abcdefghijklm",
            "6f1c2a4e-9b3d-4c8e-a1f2-3d4e5f6a7b8c",
            "6F1C2A4E-9B3D-4C8E-A1F2-3D4E5F6A7B8C",
            "6f1c2a4e-9b3d-4c8e-a1f2-3d4e5f6a7b8",
            "6f1c2a4e-9b3d-4c8e-a1f2-3d4e5f6a7b8g",
            "6f1c2a4e-9b3d-4c8e-a1f2-3d4e5f6a7b8:",
            "6f1c2a4e-9b3d-4c8e-a1f2-3d4e5f6a7b8/",
            "6f1c2a4e-9b3d-4c8e-a1f2-3d4e5f6a7b8`",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "ünïcödé-ïd",
        ] {
            let c = CompactStr::new(s);
            assert_eq!(c.to_string(), s);
            assert!(c.eq_str(s), "{s}");
            assert!(!c.eq_str("something else"), "{s}");
        }
        assert!(matches!(CompactStr::new("6f1c2a4e-9b3d-4c8e-a1f2-3d4e5f6a7b8c"), CompactStr::Uuid(_)));
        assert_eq!(CompactStr::new("6F1C2A4E-9B3D-4C8E-A1F2-3D4E5F6A7B8C").heap_bytes(), 36, "upper case kept verbatim");
        assert_eq!(CompactStr::new("ord-000001").heap_bytes(), 0);
    }

    #[test]
    fn uuid_parse_agrees_with_a_plain_parser() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let alphabet = b"0123456789abcdefABCDEF-g/:`@ \xff";
        for _ in 0..20_000 {
            let mut text: Vec<u8> = b"6f1c2a4e-9b3d-4c8e-a1f2-3d4e5f6a7b8c".to_vec();
            for _ in 0..(next() % 3) {
                let at = (next() % 36) as usize;
                text[at] = alphabet[(next() % alphabet.len() as u64) as usize];
            }
            let Ok(s) = std::str::from_utf8(&text) else { continue };
            let plain = s.len() == 36
                && s.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { matches!(c, '0'..='9' | 'a'..='f') });
            assert_eq!(parse_uuid(s).is_some(), plain, "{s}");
            if plain {
                assert_eq!(CompactStr::new(s).to_string(), s);
            }
        }
    }

    #[test]
    fn byte_equality() {
        let base = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789";
        for n in 0..base.len() {
            let a = &base.as_bytes()[..n];
            assert!(eq_bytes(a, a));
            assert!(!eq_bytes(a, &base.as_bytes()[..n + 1]));
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 1;
                assert!(!eq_bytes(a, &b), "{n} {i}");
            }
        }
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(Fnv64::hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv64::hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv64::hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn string_hash_is_stable_and_spreads() {
        assert_eq!(hash_str(0, "order"), hash_str(0, "order"));
        assert_ne!(hash_str(0, "order"), hash_str(1, "order"));
        assert_ne!(hash_str(0, "ord-000001"), hash_str(0, "ord-000002"));
        assert_ne!(hash_str(0, "12345678"), hash_str(0, "123456780"));
        // Every length class, and strings that differ in one byte anywhere.
        let base = "abcdefghijklmnopqrstuvwxyz0123456789";
        let mut seen = std::collections::HashSet::new();
        for n in 0..=base.len() {
            let s = &base[..n];
            assert!(seen.insert(hash_str(0, s)), "{s}");
            for i in 0..n {
                let mut t = s.as_bytes().to_vec();
                t[i] = b'_';
                assert!(seen.insert(hash_str(0, std::str::from_utf8(&t).unwrap())), "{s} at {i}");
            }
        }
    }
}
