//! The functions users' SQL runs with in place of SQLite's own (`sql/functions.rs`) answer what
//! SQLite's answer: the same type and bytes, or an error where SQLite errs, over random arguments
//! of every type — text with wildcards, invalid UTF-8 and NULs, blobs, integers, reals, NULL.

use causeway_store::{SqlLimits, Store};
use rusqlite::Connection;
use serde_json::Value;

/// xorshift64*: deterministic, so a failure names a case that reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const PIECES: &[&[u8]] = &[
    b"a",
    b"A",
    b"b",
    b"B",
    b"x",
    b"%",
    b"_",
    b"*",
    b"?",
    b"[",
    b"]",
    b"^",
    b"-",
    b"\\",
    b" ",
    b"0",
    b"9",
    b"f",
    b"F",
    b"g",
    b":",
    "é".as_bytes(),
    "É".as_bytes(),
    "😀".as_bytes(),
    b"\xc3",
    b"\xa9",
    b"\xff",
    b"\x00",
    b"\xc3\xa9\xa9",
];

/// A few characters only, so that escapes meet the wildcards they escape.
const ESCAPED: &[&[u8]] = &[b"a", b"b", b"A", b"_", b"%", b"\\", "é".as_bytes()];

fn bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    bytes_of(rng, max, PIECES)
}

fn bytes_of(rng: &mut Rng, max: usize, alphabet: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(max + 1) {
        let piece = rng.pick(alphabet);
        out.extend_from_slice(piece);
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// One argument as an SQL expression.
fn arg(rng: &mut Rng, max: usize) -> String {
    match rng.below(10) {
        0 => "NULL".into(),
        1 => rng.pick(&["0", "-1", "12", "1234567890123", "-9223372036854775808"]).to_string(),
        2 => rng.pick(&["1.5", "0.1", "-0.0", "1e20", "100.0", "3.0e-7", "1.7976931348623157e308"]).to_string(),
        3 => format!("X'{}'", hex(&bytes(rng, max))),
        _ => format!("CAST(X'{}' AS TEXT)", hex(&bytes(rng, max))),
    }
}

/// `typeof` and `hex` of the result, or `None` for an error.
fn builtin(conn: &Connection, expr: &str) -> Option<(String, String)> {
    conn.query_row(&format!("SELECT typeof(r), hex(r) FROM (SELECT {expr} AS r)"), [], |row| Ok((row.get(0)?, row.get(1)?))).ok()
}

fn replaced(store: &Store, expr: &str) -> Option<(String, String)> {
    let answer = store.sql(&format!("SELECT typeof(r), hex(r) FROM (SELECT {expr} AS r)"), SqlLimits::default()).ok()?;
    let row = &answer.rows[0];
    let text = |v: &Value| v.as_str().expect("typeof and hex are text").to_string();
    Some((text(&row[0]), text(&row[1])))
}

#[test]
fn replaced_functions_answer_as_sqlites_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let conn = Connection::open_in_memory().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut compared = 0;
    for n in 0..12_000 {
        let expr = match n % 12 {
            0 => format!("instr({}, {})", arg(&mut rng, 8), arg(&mut rng, 3)),
            1 => format!("replace({}, {}, {})", arg(&mut rng, 8), arg(&mut rng, 2), arg(&mut rng, 3)),
            2 => format!("trim({}, {})", arg(&mut rng, 6), arg(&mut rng, 3)),
            3 => format!("ltrim({}, {})", arg(&mut rng, 6), arg(&mut rng, 3)),
            4 => format!("rtrim({}, {})", arg(&mut rng, 6), arg(&mut rng, 3)),
            5 => format!("unhex({}, {})", arg(&mut rng, 8), arg(&mut rng, 3)),
            6 | 7 => format!("({}) LIKE ({})", arg(&mut rng, 6), arg(&mut rng, 5)),
            8 => {
                let (string, pattern) = (bytes_of(&mut rng, 5, ESCAPED), bytes_of(&mut rng, 5, ESCAPED));
                let escape = match rng.below(8) {
                    0 => arg(&mut rng, 1),
                    _ => rng.pick(&["'\\'", "'%'", "'_'", "'a'", "'é'", "'ab'", "''", "NULL"]).to_string(),
                };
                format!("CAST(X'{}' AS TEXT) LIKE CAST(X'{}' AS TEXT) ESCAPE {escape}", hex(&string), hex(&pattern))
            }
            _ => format!("({}) GLOB ({})", arg(&mut rng, 6), arg(&mut rng, 6)),
        };
        let want = builtin(&conn, &expr);
        let got = replaced(&store, &expr);
        assert_eq!(got, want, "case {n}: {expr}");
        compared += usize::from(want.is_some());
    }
    // Most cases answer (errors are the ESCAPE mistakes).
    assert!(compared > 11_000, "{compared}");
}

/// Hand-picked cases where SQLite's behaviour is easy to get wrong.
#[test]
fn replaced_functions_keep_sqlites_corner_cases() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let conn = Connection::open_in_memory().unwrap();
    for expr in [
        "instr('héllo', 'l')",
        "instr(X'68C3A96C6C6F', X'6C')",
        "instr('héllo', X'A9')",
        "instr(CAST(X'A96162' AS TEXT), X'A9')",
        "instr('aaa', 'aa')",
        "instr('', '')",
        "instr(12.5, '.')",
        "instr(1e20, 'e')",
        "replace('aaaa', 'aa', 'b')",
        "replace('abc', '', NULL)",
        "replace('abc', CAST(X'0062' AS TEXT), 'x')",
        "replace(X'610062', 'b', 'c')",
        "replace(123, 2, 4.5)",
        "trim('xxhixx', 'x')",
        "trim('ééhié', 'é')",
        "ltrim(CAST(X'C3A9A9C3' AS TEXT), CAST(X'C3A9A9C3' AS TEXT))",
        "rtrim('abc', CAST(X'6300' AS TEXT))",
        "trim('abc', '')",
        "unhex('12 34', ' ')",
        "unhex('12-34é56', 'é-')",
        "unhex('123', '')",
        "unhex('12', NULL)",
        "'abc' LIKE 'A_C'",
        "'a_c' LIKE 'a\\_c' ESCAPE '\\'",
        "'abc' LIKE 'a\\_c' ESCAPE '\\'",
        "'abc' LIKE 'a_c' ESCAPE '_'",
        "'a%c' LIKE 'a%%c' ESCAPE '%'",
        "'abc' LIKE 'abc' ESCAPE 'ab'",
        "'ÉA' LIKE 'éa'",
        "'ab]' GLOB '*[]]'",
        "'b' GLOB '[^a-c]'",
        "'-' GLOB '[a-]'",
        "'x' GLOB '[a'",
        "'abc' GLOB '*[bc]c'",
        "CAST(X'610062' AS TEXT) LIKE 'a'",
        "1.5 LIKE '1._'",
    ] {
        assert_eq!(replaced(&store, expr), builtin(&conn, expr), "{expr}");
    }
}
