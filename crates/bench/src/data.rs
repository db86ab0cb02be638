//! The generated data set: deterministic (SplitMix64), realistic order-fulfilment traffic.
//!
//! Correlations of 5–12 events form a causation tree (an `OrderPlaced` root, children,
//! grandchildren…) over five services. Every event is a CloudEvents 1.0 JSON object of roughly
//! 400–600 bytes with a W3C `traceparent` (one trace per correlation) and a small `data` payload.
//! The same seed always gives the same events, byte for byte.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::DateTime;

/// Sebastiano Vigna's SplitMix64: tiny, fast, good enough for test data, no dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A version-4 UUID string.
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0x0fff, ((b >> 48) & 0x3fff) | 0x8000, b & 0xffff_ffff_ffff)
    }
}

/// The five producing services (CloudEvents `source`).
pub const SERVICES: [&str; 5] = ["order-service", "payment-service", "inventory-service", "fulfilment-service", "notification-service"];

/// Non-root event types: (service index, CloudEvents type).
const REACTIONS: [(usize, &str); 12] = [
    (1, "com.acme.payments.PaymentRequested"),
    (1, "com.acme.payments.PaymentAuthorized"),
    (1, "com.acme.payments.PaymentCaptured"),
    (2, "com.acme.inventory.InventoryReserved"),
    (2, "com.acme.inventory.StockLevelChanged"),
    (3, "com.acme.fulfilment.ShipmentCreated"),
    (3, "com.acme.fulfilment.ShipmentDispatched"),
    (3, "com.acme.fulfilment.PackageDelivered"),
    (4, "com.acme.notifications.CustomerNotified"),
    (4, "com.acme.notifications.EmailSent"),
    (0, "com.acme.orders.OrderConfirmed"),
    (0, "com.acme.orders.OrderCompleted"),
];
const ROOT_TYPE: &str = "com.acme.orders.OrderPlaced";
const REGIONS: [&str; 4] = ["eu-west-1", "eu-central-1", "us-east-1", "ap-southeast-2"];
/// 2026-01-01T00:00:00Z.
const BASE_MICROS: i64 = 1_767_225_600_000_000;

/// One generated event: its indexed attributes and its JSON line.
#[derive(Debug, Clone)]
pub struct GenEvent {
    pub id: String,
    pub source: &'static str,
    pub event_type: &'static str,
    pub correlation_id: String,
    /// `None` for the root of its correlation.
    pub causation_id: Option<String>,
    /// The aggregate id (`subject`).
    pub subject: String,
    /// Event time, microseconds since the Unix epoch.
    pub time_micros: i64,
    /// The CloudEvents structured-mode JSON, one line.
    pub json: String,
}

impl GenEvent {
    pub fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.time_micros as u64)
    }
}

/// `n` events, correlation by correlation (each correlation's events in causal order).
#[derive(Debug)]
pub struct Dataset {
    pub seed: u64,
    pub events: Vec<GenEvent>,
    pub correlations: usize,
}

impl Dataset {
    pub fn generate(n: usize, seed: u64) -> Dataset {
        let mut rng = SplitMix64::new(seed);
        let mut events = Vec::with_capacity(n);
        let mut correlations = 0usize;
        while events.len() < n {
            let size = (5 + rng.below(8) as usize).min(n - events.len());
            let start = BASE_MICROS + correlations as i64 * 37_000 + rng.below(30_000) as i64;
            generate_correlation(&mut rng, size, start, &mut events);
            correlations += 1;
        }
        Dataset { seed, events, correlations }
    }

    /// Mean JSON line length in bytes.
    pub fn mean_event_bytes(&self) -> f64 {
        if self.events.is_empty() {
            return 0.0;
        }
        self.events.iter().map(|e| e.json.len()).sum::<usize>() as f64 / self.events.len() as f64
    }

    /// NDJSON bodies of `batch` events each, in data order.
    pub fn ndjson_batches(&self, batch: usize) -> Vec<Vec<u8>> {
        self.events.chunks(batch).map(ndjson).collect()
    }

    /// `count` event indexes, uniformly drawn with a generator seeded from the data's seed and
    /// `stream`, so every side of the comparison queries the same ids in the same order.
    pub fn sample_indexes(&self, count: usize, stream: u64) -> Vec<usize> {
        let mut rng = SplitMix64::new(self.seed ^ 0x5EED_0000_0000_0000 ^ stream.wrapping_mul(0x9E37_79B9));
        (0..count).map(|_| rng.below(self.events.len() as u64) as usize).collect()
    }
}

/// One NDJSON body: the events' JSON lines, in order.
pub fn ndjson(events: &[GenEvent]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.json.len() + 1).sum());
    for e in events {
        body.extend_from_slice(e.json.as_bytes());
        body.push(b'\n');
    }
    body
}

/// The events [`Dataset::generate`] gives for the same `n` and seed, one at a time: only the
/// current correlation is held in memory, so ten million events stream in a few kilobytes.
#[derive(Debug, Clone)]
pub struct EventStream {
    rng: SplitMix64,
    /// Events not generated yet.
    remaining: usize,
    correlations: usize,
    /// The current correlation's events not handed out yet, the next one last.
    pending: Vec<GenEvent>,
}

impl EventStream {
    pub fn new(n: usize, seed: u64) -> EventStream {
        EventStream { rng: SplitMix64::new(seed), remaining: n, correlations: 0, pending: Vec::with_capacity(12) }
    }

    /// Correlations started so far.
    pub fn correlations(&self) -> usize {
        self.correlations
    }
}

impl Iterator for EventStream {
    type Item = GenEvent;

    fn next(&mut self) -> Option<GenEvent> {
        if self.pending.is_empty() {
            if self.remaining == 0 {
                return None;
            }
            // The same draws, in the same order, as `Dataset::generate`.
            let size = (5 + self.rng.below(8) as usize).min(self.remaining);
            let start = BASE_MICROS + self.correlations as i64 * 37_000 + self.rng.below(30_000) as i64;
            generate_correlation(&mut self.rng, size, start, &mut self.pending);
            self.correlations += 1;
            self.remaining -= size;
            self.pending.reverse();
        }
        self.pending.pop()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining + self.pending.len();
        (n, Some(n))
    }
}

fn generate_correlation(rng: &mut SplitMix64, size: usize, start_micros: i64, out: &mut Vec<GenEvent>) {
    let correlation_id = rng.uuid();
    let trace_id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    let order = format!("order-{:08x}", rng.next_u64() as u32);
    let customer = format!("cust-{:06}", rng.below(1_000_000));
    let amount_cents = 500 + rng.below(50_000);
    let items = 1 + rng.below(6);
    let region = REGIONS[rng.below(REGIONS.len() as u64) as usize];
    let warehouse = rng.below(24);
    let first = out.len();
    let mut times = Vec::with_capacity(size);
    for i in 0..size {
        let (parent, service, event_type, time) = if i == 0 {
            (None, 0, ROOT_TYPE, start_micros)
        } else {
            // Parents come from the later half of the events so far: trees two to four levels deep.
            let p = (i - 1) / 2 + rng.below((i - (i - 1) / 2) as u64) as usize;
            let (service, event_type) = REACTIONS[rng.below(REACTIONS.len() as u64) as usize];
            (Some(p), service, event_type, times[p] + 1_000 + rng.below(800_000) as i64)
        };
        times.push(time);
        let id = rng.uuid();
        let causation_id = parent.map(|p: usize| out[first + p].id.clone());
        let span_id = rng.next_u64();
        let time_text = DateTime::from_timestamp_micros(time).expect("generated times are in range").format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let causation = match &causation_id {
            Some(c) => format!(r#","causationid":"{c}""#),
            None => String::new(),
        };
        let json = format!(
            concat!(
                r#"{{"specversion":"1.0","id":"{id}","source":"{source}","type":"{event_type}","time":"{time}","#,
                r#""subject":"{order}","datacontenttype":"application/json","correlationid":"{corr}"{causation},"#,
                r#""traceparent":"00-{trace}-{span:016x}-01","data":{{"orderId":"{order}","customerId":"{customer}","#,
                r#""amount":{units}.{cents:02},"currency":"EUR","lineItems":{items},"region":"{region}","#,
                r#""warehouse":"wh-{warehouse:02}","step":{step}}}}}"#
            ),
            id = id,
            source = SERVICES[service],
            event_type = event_type,
            time = time_text,
            order = order,
            corr = correlation_id,
            causation = causation,
            trace = trace_id,
            span = span_id,
            customer = customer,
            units = amount_cents / 100,
            cents = amount_cents % 100,
            items = items,
            region = region,
            warehouse = warehouse,
            step = i,
        );
        out.push(GenEvent {
            id,
            source: SERVICES[service],
            event_type,
            correlation_id: correlation_id.clone(),
            causation_id,
            subject: order.clone(),
            time_micros: time,
            json,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_realistic() {
        let a = Dataset::generate(5_000, 7);
        let b = Dataset::generate(5_000, 7);
        assert_eq!(a.events.len(), 5_000);
        assert!(a.events.iter().zip(&b.events).all(|(x, y)| x.json == y.json));
        let mean = a.mean_event_bytes();
        assert!((400.0..=600.0).contains(&mean), "mean event size {mean}");
        for e in &a.events {
            let v: serde_json::Value = serde_json::from_str(&e.json).unwrap();
            assert_eq!(v["id"], e.id.as_str());
            assert_eq!(v["correlationid"], e.correlation_id.as_str());
        }
        // Correlations of 5–12 events (but the last), with grandchildren.
        let roots = a.events.iter().filter(|e| e.causation_id.is_none()).count();
        assert_eq!(roots, a.correlations);
        assert!((5_000 / 12..=5_000 / 5 + 1).contains(&roots));
        let ids: std::collections::HashMap<&str, &GenEvent> = a.events.iter().map(|e| (e.id.as_str(), e)).collect();
        let deep = a.events.iter().filter(|e| e.causation_id.as_deref().and_then(|p| ids[p].causation_id.as_deref()).is_some()).count();
        assert!(deep > 1_000, "{deep} events have a grandparent");
        // Every child is later than its parent.
        assert!(a.events.iter().all(|e| e.causation_id.as_deref().is_none_or(|p| ids[p].time_micros < e.time_micros)));
    }

    #[test]
    fn the_stream_gives_the_data_set() {
        for n in [0, 1, 7, 2_000, 5_003] {
            let data = Dataset::generate(n, 11);
            let mut stream = EventStream::new(n, 11);
            assert_eq!(stream.size_hint(), (n, Some(n)));
            let streamed: Vec<GenEvent> = stream.by_ref().collect();
            assert_eq!(streamed.len(), n);
            assert!(streamed.iter().zip(&data.events).all(|(a, b)| a.json == b.json && a.causation_id == b.causation_id), "n = {n}");
            assert_eq!(stream.correlations(), data.correlations);
        }
    }
}
