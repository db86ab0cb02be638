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
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: use a whole number and a unit: 500ms, 30s, 5m, 2h, 3d"))?;
    if n == 0 {
        return Err(format!("'{text}' is zero: a duration must be positive"));
    }
    n.checked_mul(unit_ms).ok_or_else(|| format!("'{text}' is too long a duration"))
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
    fn percents() {
        assert_eq!(parse_percent("99.9%"), Ok(99.9));
        for bad in ["95", "101%", "abc%", "-1%"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }
}
