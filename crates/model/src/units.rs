//! Durations (`500ms`, `30s`, `5m`, `2h`, `3d`) and percentages (`99.9%`).

/// Milliseconds of a duration; the error says what is accepted.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("'{text}' is not a duration: use a whole number and a unit: 500ms, 30s, 5m, 2h, 3d")),
    };
    let n: u64 = number.parse().map_err(|_| format!("'{text}' is not a duration: use a whole number and a unit: 500ms, 30s, 5m, 2h, 3d"))?;
    if n == 0 {
        return Err(format!("'{text}' is zero: a duration must be positive"));
    }
    n.checked_mul(unit_ms).ok_or_else(|| format!("'{text}' is too long a duration"))
}

/// Milliseconds written the way a model file writes them: the largest unit that divides evenly
/// (`30000` → `30s`, `90000` → `90s`, `1500` → `1500ms`). The inverse of [`parse_duration`].
pub fn format_duration(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s")];
    for (size, unit) in UNITS {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A percentage between 0 and 100, written with `%`.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let Some(number) = t.strip_suffix('%') else {
        return Err(format!("'{text}' is not a percentage: write it with a % sign, e.g. 99.9%"));
    };
    let p: f64 = number.trim().parse().map_err(|_| format!("'{text}' is not a percentage: e.g. 99.9%"))?;
    if !(0.0..=100.0).contains(&p) || p.is_nan() {
        return Err(format!("'{text}' is out of range: a percentage is between 0% and 100%"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("3d"), Ok(259_200_000));
        for bad in ["5", "m", "1.5h", "-1s", "5 min", "0s", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatted_durations_read_back() {
        for (ms, text) in [(30_000, "30s"), (300_000, "5m"), (90_000, "90s"), (7_200_000, "2h"), (172_800_000, "2d"), (1_500, "1500ms")] {
            assert_eq!(format_duration(ms), text);
            assert_eq!(parse_duration(text), Ok(ms));
        }
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("99.9%"), Ok(99.9));
        for bad in ["95", "101%", "abc%", "-1%"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }
}
