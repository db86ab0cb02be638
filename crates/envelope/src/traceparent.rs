//! W3C Trace Context `traceparent` validation (https://www.w3.org/TR/trace-context/#traceparent-header).

/// Checks a `traceparent` value; the error is a sentence saying what is wrong with it.
pub fn validate_traceparent(value: &str) -> Result<(), String> {
    let expected = "expected W3C trace context 00-<32 lower-case hex trace id>-<16 lower-case hex parent id>-<2 hex flags>";
    let parts: Vec<&str> = value.split('-').collect();
    if parts.len() < 4 {
        return Err(format!("traceparent '{value}' is not W3C trace context: {expected}"));
    }
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let (version, trace_id, parent_id, flags) = (parts[0], parts[1], parts[2], parts[3]);
    if !is_hex(version, 2) || version == "ff" {
        return Err(format!("traceparent '{value}' has an invalid version '{version}': {expected}"));
    }
    // Version 00 has exactly four fields; later versions may append more (forward compatible).
    if version == "00" && parts.len() != 4 {
        return Err(format!("traceparent '{value}' has extra fields for version 00: {expected}"));
    }
    if !is_hex(trace_id, 32) {
        return Err(format!("traceparent '{value}' has an invalid trace id '{trace_id}': {expected}"));
    }
    if trace_id.bytes().all(|b| b == b'0') {
        return Err(format!("traceparent '{value}' has an all-zero trace id, which W3C forbids"));
    }
    if !is_hex(parent_id, 16) {
        return Err(format!("traceparent '{value}' has an invalid parent id '{parent_id}': {expected}"));
    }
    if parent_id.bytes().all(|b| b == b'0') {
        return Err(format!("traceparent '{value}' has an all-zero parent id, which W3C forbids"));
    }
    if !is_hex(flags, 2) {
        return Err(format!("traceparent '{value}' has invalid flags '{flags}': {expected}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_traceparent;

    #[test]
    fn accepts_w3c_examples() {
        validate_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        validate_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        // A future version may carry more fields.
        validate_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").unwrap();
    }

    #[test]
    fn rejects_each_malformation_with_a_reason() {
        for (value, needle) in [
            ("garbage", "not W3C"),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "invalid version"),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "invalid trace id"),
            ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "invalid trace id"),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "all-zero trace id"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "all-zero parent id"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", "invalid flags"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", "extra fields"),
        ] {
            let err = validate_traceparent(value).unwrap_err();
            assert!(err.contains(needle), "{value}: {err}");
        }
    }
}
