//! Per-token rates (`[auth.rates]`, one per role): each token has a bucket holding a second's
//! worth of its role's rate, refilled continuously. An ingest request takes one unit per event,
//! any other request one. A request is let through when the bucket holds what it takes, or is full
//! (so a batch larger than a second's worth passes alone and the bucket goes into debt); otherwise
//! it is refused with the time after which it would pass.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Role;

/// Units per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(f64);

impl Rate {
    /// `500/s`, `30000/m`, `1000000/h`, or a number (per second).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let text = text.trim();
        let (number, per) = match text.split_once('/') {
            Some((n, unit)) => (n.trim(), unit.trim()),
            None => (text, "s"),
        };
        let seconds = match per {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("'{text}': the unit after '/' is s, m or h, not '{other}'")),
        };
        let n: f64 = number.parse().map_err(|_| format!("'{text}' is not a rate such as 500/s or 30000/m"))?;
        if !(n.is_finite() && n > 0.0) {
            return Err(format!("'{text}': a rate is more than 0"));
        }
        Ok(Rate(n / seconds))
    }

    pub fn per_second(self) -> f64 {
        self.0
    }
}

struct Bucket {
    units: f64,
    at: Instant,
}

/// The buckets of every token that made a request.
#[derive(Default)]
pub struct Limiter {
    rates: HashMap<Role, Rate>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(rates: HashMap<Role, Rate>) -> Limiter {
        Limiter { rates, buckets: Mutex::default() }
    }

    pub fn rate(&self, role: Role) -> Option<Rate> {
        self.rates.get(&role).copied()
    }

    /// Takes `units` from the token's bucket, or answers how long to wait before trying again.
    pub fn take(&self, token: &str, role: Role, units: u64, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate(role) else { return Ok(()) };
        let capacity = rate.0.max(1.0);
        let mut buckets = self.buckets.lock().expect("rate lock");
        let bucket = buckets.entry(token.to_string()).or_insert(Bucket { units: capacity, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.units = (bucket.units + elapsed * rate.0).min(capacity);
        bucket.at = now;
        let wanted = units as f64;
        if bucket.units >= wanted || bucket.units >= capacity {
            bucket.units -= wanted;
            return Ok(());
        }
        let short = wanted.min(capacity) - bucket.units;
        Err(Duration::from_secs_f64(short / rate.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: &str) -> Limiter {
        Limiter::new(HashMap::from([(Role::Producer, Rate::parse(rate).unwrap())]))
    }

    #[test]
    fn rates_parse_in_three_units_and_refuse_nonsense() {
        assert_eq!(Rate::parse("500/s").unwrap().per_second(), 500.0);
        assert_eq!(Rate::parse("600/m").unwrap().per_second(), 10.0);
        assert_eq!(Rate::parse("7200 / h").unwrap().per_second(), 2.0);
        assert_eq!(Rate::parse("20").unwrap().per_second(), 20.0);
        for bad in ["", "0/s", "-1", "ten/s", "5/d", "inf"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_holds_a_second_and_refills_at_the_rate() {
        let l = limiter("100/s");
        let t0 = Instant::now();
        assert_eq!(l.take("a", Role::Producer, 60, t0), Ok(()));
        assert_eq!(l.take("a", Role::Producer, 40, t0), Ok(()));
        // Empty: 10 more need a tenth of a second.
        let wait = l.take("a", Role::Producer, 10, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // Another token has its own bucket; roles without a rate are not limited.
        assert_eq!(l.take("b", Role::Producer, 100, t0), Ok(()));
        assert_eq!(l.take("c", Role::Reader, 1_000_000, t0), Ok(()));
        // After the wait it passes.
        assert_eq!(l.take("a", Role::Producer, 10, t0 + Duration::from_millis(100)), Ok(()));
    }

    #[test]
    fn a_batch_larger_than_a_second_passes_alone_and_leaves_a_debt() {
        let l = limiter("100/s");
        let t0 = Instant::now();
        assert_eq!(l.take("a", Role::Producer, 250, t0), Ok(()));
        // 150 in debt: one unit waits a second and a half, capped at the bucket's size.
        let wait = l.take("a", Role::Producer, 1, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 1.51).abs() < 1e-6, "{wait:?}");
        assert!(l.take("a", Role::Producer, 1, t0 + Duration::from_millis(1500)).is_err());
        assert_eq!(l.take("a", Role::Producer, 1, t0 + Duration::from_millis(1510)), Ok(()));
    }
}
