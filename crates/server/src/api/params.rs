//! Query-string and request-value helpers shared by the handlers: every bad value is answered as
//! a JSON error naming the parameter and what it takes.

use crate::error::ApiError;

/// The `limit` query parameter, parsed here so a bad value is a JSON error like any other.
pub(crate) fn limit(query: &Option<String>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(text) = query.as_deref().into_iter().flat_map(|q| q.split('&')).find_map(|p| p.strip_prefix("limit=")) else {
        return Ok(default);
    };
    match whole_number(text) {
        Ok(n) if (1..=max as i64).contains(&n) => Ok(n as usize),
        Ok(_) | Err(NotANumber::OutOfRange) => {
            Err(ApiError::bad_request("invalid_parameter", format!("limit must be from 1 to {max}: {text} is out of range")))
        }
        Err(NotANumber::NotWhole) => {
            Err(ApiError::bad_request("invalid_parameter", format!("limit must be a whole number from 1 to {max}, not '{text}'")))
        }
    }
}

/// Why a client's text is not a number the API can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotANumber {
    /// Not an integer at all (`abc`, `1.5`).
    NotWhole,
    /// An integer, but beyond what any id or count can be: say so, not that it is no number.
    OutOfRange,
}

/// An integer sent in a path or query: digits with an optional sign.
pub(crate) fn whole_number(text: &str) -> Result<i64, NotANumber> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NotANumber::NotWhole);
    }
    text.parse::<i64>().map_err(|_| NotANumber::OutOfRange)
}

/// Query parameters as pairs, percent-decoded.
pub(crate) fn params(query: &Option<String>) -> Vec<(String, String)> {
    query.as_deref().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(crate) fn check_known(pairs: &[(String, String)], known: &[&str]) -> Result<(), ApiError> {
    match pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((k, _)) if known.is_empty() => {
            Err(ApiError::bad_request("invalid_parameter", format!("unknown parameter '{k}'; this endpoint takes none")))
        }
        Some((k, _)) => Err(ApiError::bad_request("invalid_parameter", format!("unknown parameter '{k}'; this endpoint takes {}", known.join(", ")))),
        None => Ok(()),
    }
}

/// An RFC 3339 time a client sent as `name` (a query parameter or a body field, answered with
/// `code`), in the store's canonical form.
pub(crate) fn rfc3339(name: &str, text: &str, code: &'static str) -> Result<String, ApiError> {
    let time = causeway_envelope::parse_time(text)
        .map_err(|_| ApiError::bad_request(code, format!("{name} must be an RFC 3339 time such as 2026-11-30T12:00:00Z, not '{text}'")))?;
    Ok(causeway_envelope::format_time(&time))
}

/// An RFC 3339 query parameter, in the store's canonical form.
pub(crate) fn time_param(pairs: &[(String, String)], name: &str) -> Result<Option<String>, ApiError> {
    param(pairs, name).map(|text| rfc3339(name, text, "invalid_parameter")).transpose()
}

/// A `true`/`false` query parameter; absent is false.
pub(crate) fn bool_param(pairs: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match param(pairs, name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request("invalid_parameter", format!("{name} must be true or false, not '{other}'"))),
    }
}
