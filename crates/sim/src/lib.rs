//! A simulator of an order-fulfilment estate — order, payment, inventory, fulfilment and
//! notification services — emitting realistic correlated traffic with causation ids and W3C
//! traceparents, and injecting faults at a configurable rate.
//!
//! **Invariant:** the same seed gives the same sequence of deliveries (ids, payloads, faults);
//! only event times follow the clock passed in. No IO: the caller delivers.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Faults the estate suffers, as an on-call engineer meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The producer's retry delivers the same event twice.
    DuplicateDelivery,
    /// An effect is delivered before its cause.
    OutOfOrder,
    /// notification-service fails on a shipment without `customerEmail`: the reaction never happens.
    ConsumerFailure,
    /// A producer forgets to propagate the correlation id.
    MissingCorrelation,
    /// payment-service's clock runs behind: its event is stamped before the order it answers.
    ClockSkew,
}

impl Fault {
    pub const ALL: [Fault; 5] = [Fault::DuplicateDelivery, Fault::OutOfOrder, Fault::ConsumerFailure, Fault::MissingCorrelation, Fault::ClockSkew];

    pub fn name(self) -> &'static str {
        match self {
            Fault::DuplicateDelivery => "duplicate delivery",
            Fault::OutOfOrder => "out-of-order delivery",
            Fault::ConsumerFailure => "consumer failure (missing field)",
            Fault::MissingCorrelation => "missing correlation id",
            Fault::ClockSkew => "producer clock behind",
        }
    }

    /// What the model and the journey engine make of this fault, in a few words.
    pub fn raises(self) -> &'static str {
        match self {
            Fault::DuplicateDelivery => "duplicate",
            Fault::OutOfOrder => "out_of_order (delivered before its cause)",
            Fault::ConsumerFailure => "schema_error, a dead letter, missing_reaction",
            Fault::MissingCorrelation => "missing_correlation (refused, in the DLQ), missing_reaction",
            Fault::ClockSkew => "out_of_order (stamped before its cause)",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    pub seed: u64,
    /// Probability, per order, of each kind of fault (0.0–1.0).
    pub fault_rate: f64,
    /// Orders in flight at once; their events interleave.
    pub concurrency: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { seed: 1, fault_rate: 0.05, concurrency: 50 }
    }
}

/// One event to deliver, in the JSON shape its producer writes, and the fault it carries if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub event: Value,
    pub fault: Option<Fault>,
    /// Every fault the order of this event is set to suffer, on any of its events.
    pub order_faults: Vec<Fault>,
}

/// SplitMix64: tiny, fast, and stable across versions, which a reproducible seed needs.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        while s.len() < digits {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(digits);
        s
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
    }
}

/// What an order emits next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    OrderCreated,
    Payment,
    OrderCancelled,
    InventoryReserved,
    ShipmentCreated,
    CustomerNotified,
    Finished,
}

#[derive(Debug)]
struct Order {
    order_id: String,
    correlation_id: String,
    trace_id: String,
    customer_email: String,
    amount: f64,
    next: Next,
    last_event_id: String,
    order_sequence: i64,
    /// Faults this order will suffer, decided when it starts.
    duplicate: bool,
    out_of_order: bool,
    consumer_failure: bool,
    missing_correlation: bool,
    clock_skew: bool,
}

/// Counters of what the simulator emitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub orders_started: u64,
    pub orders_finished: u64,
    pub events: u64,
    pub deliveries: u64,
    /// Faults injected, in the order of `Fault::ALL`; a delivery may suffer several.
    pub faults: [u64; 5],
}

pub struct Simulator {
    config: SimConfig,
    rng: Rng,
    in_flight: Vec<Order>,
    ready: VecDeque<Delivery>,
    next_order: u64,
    stats: SimStats,
    /// The latest event time handed out: a batch starting at an earlier `now` continues from
    /// it, so no event is stamped before its cause unless a fault says so.
    clock: Option<DateTime<Utc>>,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Simulator {
        Simulator {
            config,
            rng: Rng(config.seed),
            in_flight: Vec::new(),
            ready: VecDeque::new(),
            next_order: 1,
            stats: SimStats::default(),
            clock: None,
        }
    }

    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// The next `n` deliveries; event times start at `now` (or where the previous batch left
    /// off, if that is later) and advance a millisecond per event.
    pub fn next_batch(&mut self, n: usize, now: DateTime<Utc>) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(n);
        let mut clock = self.clock.map_or(now, |last| last.max(now));
        while out.len() < n {
            if let Some(d) = self.ready.pop_front() {
                out.push(d);
                continue;
            }
            clock += Duration::milliseconds(1);
            self.advance(clock);
        }
        self.clock = Some(clock);
        self.stats.deliveries += out.len() as u64;
        out
    }

    /// Moves one order (new or in flight) one step, queueing its deliveries.
    fn advance(&mut self, time: DateTime<Utc>) {
        if self.in_flight.len() < self.config.concurrency.max(1) {
            let order = self.start_order();
            self.in_flight.push(order);
        }
        let i = self.rng.below(self.in_flight.len() as u64) as usize;
        let order = &self.in_flight[i];
        let swap = order.out_of_order && order.next == Next::InventoryReserved;
        let mut deliveries = vec![self.step(i, time)];
        if swap {
            // Out of order: the shipment (effect) is delivered before the reservation (its cause).
            deliveries.push(self.step(i, time + Duration::milliseconds(1)));
            deliveries.reverse();
            // A delivery carries one fault label; a shipment already failing keeps its own. The
            // count is of faults injected, so it counts either way.
            if deliveries[0].fault.is_none() {
                deliveries[0].fault = Some(Fault::OutOfOrder);
            }
            self.count(Fault::OutOfOrder);
        }
        for d in deliveries {
            if d.fault == Some(Fault::DuplicateDelivery) {
                self.ready.push_back(d.clone());
            }
            self.ready.push_back(d);
        }
        if self.in_flight[i].next == Next::Finished {
            self.in_flight.swap_remove(i);
            self.stats.orders_finished += 1;
        }
    }

    fn start_order(&mut self) -> Order {
        let n = self.next_order;
        self.next_order += 1;
        self.stats.orders_started += 1;
        let p = self.config.fault_rate;
        Order {
            order_id: format!("ord-{n:06}"),
            correlation_id: self.rng.uuid(),
            trace_id: self.rng.hex(32),
            customer_email: format!("customer{}@example.com", self.rng.below(100_000)),
            amount: (self.rng.below(50_000) as f64) / 100.0 + 5.0,
            next: Next::OrderCreated,
            last_event_id: String::new(),
            order_sequence: 0,
            duplicate: self.rng.chance(p),
            out_of_order: self.rng.chance(p),
            consumer_failure: self.rng.chance(p),
            missing_correlation: self.rng.chance(p),
            clock_skew: self.rng.chance(p),
        }
    }

    fn count(&mut self, fault: Fault) {
        let i = Fault::ALL.iter().position(|f| *f == fault).expect("listed");
        self.stats.faults[i] += 1;
    }

    /// Emits the event of order `i`'s next step and moves it on.
    fn step(&mut self, i: usize, time: DateTime<Utc>) -> Delivery {
        let event_id = self.rng.uuid();
        let span_id = self.rng.hex(16);
        let payment_fails = self.rng.chance(0.08);
        let order = &mut self.in_flight[i];
        let suffix = order.order_id[4..].to_string();
        let (source, event_type, subject, mut data, next) = match order.next {
            Next::OrderCreated => (
                "order-service",
                "OrderCreated",
                order.order_id.clone(),
                json!({"orderId": order.order_id, "customerEmail": order.customer_email, "amount": order.amount,
                       "currency": "EUR", "lines": [{"sku": "SKU-1", "qty": 1}]}),
                Next::Payment,
            ),
            Next::Payment if payment_fails => (
                "payment-service",
                "PaymentFailed",
                format!("pay-{suffix}"),
                json!({"orderId": order.order_id, "reason": "card_declined"}),
                Next::OrderCancelled,
            ),
            Next::Payment => (
                "payment-service",
                "PaymentProcessed",
                format!("pay-{suffix}"),
                json!({"orderId": order.order_id, "amount": order.amount, "currency": "EUR"}),
                Next::InventoryReserved,
            ),
            Next::OrderCancelled => (
                "order-service",
                "OrderCancelled",
                order.order_id.clone(),
                json!({"orderId": order.order_id, "reason": "payment_failed"}),
                Next::Finished,
            ),
            Next::InventoryReserved => (
                "inventory-service",
                "InventoryReserved",
                format!("res-{suffix}"),
                json!({"orderId": order.order_id, "items": 1}),
                Next::ShipmentCreated,
            ),
            Next::ShipmentCreated => (
                "fulfilment-service",
                "ShipmentCreated",
                format!("shp-{suffix}"),
                json!({"orderId": order.order_id, "carrier": "DHL", "customerEmail": order.customer_email}),
                // notification-service needs customerEmail: without it the reaction never happens.
                if order.consumer_failure { Next::Finished } else { Next::CustomerNotified },
            ),
            Next::CustomerNotified | Next::Finished => (
                "notification-service",
                "CustomerNotified",
                order.order_id.clone(),
                json!({"orderId": order.order_id, "channel": "email", "to": order.customer_email}),
                Next::Finished,
            ),
        };
        let mut fault = None;
        let mut correlation = Some(order.correlation_id.clone());
        match event_type {
            "PaymentProcessed" | "PaymentFailed" if order.duplicate => fault = Some(Fault::DuplicateDelivery),
            "InventoryReserved" if order.missing_correlation => {
                correlation = None;
                fault = Some(Fault::MissingCorrelation);
            }
            "ShipmentCreated" if order.consumer_failure => {
                data.as_object_mut().expect("object").remove("customerEmail");
                fault = Some(Fault::ConsumerFailure);
            }
            _ => {}
        }
        // Two seconds behind: the payment is stamped before the order it answers.
        let skewed = order.clock_skew && matches!(event_type, "PaymentProcessed" | "PaymentFailed");
        let time = if skewed { time - Duration::seconds(2) } else { time };
        let causation = std::mem::replace(&mut order.last_event_id, event_id.clone());
        let sequence = if subject == order.order_id {
            order.order_sequence += 1;
            order.order_sequence
        } else {
            1
        };
        order.next = next;
        let traceparent = format!("00-{}-{span_id}-01", order.trace_id);
        let time_text = time.to_rfc3339_opts(SecondsFormat::Millis, true);
        // inventory-service is a hand-rolled producer: it writes the metadata/payload shape.
        let event = if source == "inventory-service" {
            let mut metadata = json!({"eventId": event_id, "eventType": event_type, "causationId": causation,
                                      "timestamp": time_text, "source": source, "traceparent": traceparent});
            if let Some(c) = &correlation {
                metadata["correlationId"] = json!(c);
            }
            json!({"metadata": metadata, "payload": data, "entityId": subject})
        } else {
            let mut e = json!({"specversion": "1.0", "id": event_id, "source": source, "type": event_type,
                               "time": time_text, "subject": subject, "datacontenttype": "application/json",
                               "traceparent": traceparent, "sequence": sequence, "data": data});
            if let Some(c) = &correlation {
                e["correlationid"] = json!(c);
            }
            if !causation.is_empty() {
                e["causationid"] = json!(causation);
            }
            if event_type == "PaymentProcessed" {
                e["idempotencykey"] = json!(format!("charge-{}", order.order_id));
            }
            e
        };
        if let Some(f) = fault {
            self.count(f);
        }
        if skewed {
            self.count(Fault::ClockSkew);
        }
        self.stats.events += 1;
        let order = &self.in_flight[i];
        let flags = [order.duplicate, order.out_of_order, order.consumer_failure, order.missing_correlation, order.clock_skew];
        let order_faults = Fault::ALL.iter().zip(flags).filter(|(_, on)| *on).map(|(f, _)| *f).collect();
        Delivery { event, fault, order_faults }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn run(seed: u64, fault_rate: f64, n: usize) -> (Vec<Delivery>, SimStats) {
        let mut sim = Simulator::new(SimConfig { seed, fault_rate, concurrency: 20 });
        let now = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().with_timezone(&Utc);
        let mut out = Vec::new();
        for _ in 0..n / 100 {
            out.extend(sim.next_batch(100, now));
        }
        (out, sim.stats().clone())
    }

    fn id(e: &Value) -> String {
        e.get("id").or_else(|| e["metadata"].get("eventId")).and_then(Value::as_str).unwrap().to_string()
    }

    fn cause(e: &Value) -> Option<&str> {
        e.get("causationid").or_else(|| e["metadata"].get("causationId")).and_then(Value::as_str).filter(|c| !c.is_empty())
    }

    fn time(e: &Value) -> DateTime<Utc> {
        let text = e.get("time").or_else(|| e["metadata"].get("timestamp")).and_then(Value::as_str).unwrap();
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// Distinct events stamped before the event that caused them.
    fn stamped_before_cause(deliveries: &[Delivery]) -> u64 {
        let times: HashMap<String, DateTime<Utc>> = deliveries.iter().map(|d| (id(&d.event), time(&d.event))).collect();
        let mut skewed = HashSet::new();
        for d in deliveries {
            if let Some(cause_time) = cause(&d.event).and_then(|c| times.get(c))
                && time(&d.event) < *cause_time
            {
                skewed.insert(id(&d.event));
            }
        }
        skewed.len() as u64
    }

    #[test]
    fn same_seed_same_traffic() {
        assert_eq!(run(7, 0.1, 1000).0, run(7, 0.1, 1000).0);
        assert_ne!(run(7, 0.1, 1000).0, run(8, 0.1, 1000).0);
    }

    #[test]
    fn without_faults_every_cause_is_delivered_and_stamped_before_its_effect() {
        // Every batch of `run` starts at the same `now`: times must still never go back.
        let (deliveries, stats) = run(3, 0.0, 5000);
        assert_eq!(stats.faults, [0; 5]);
        let mut seen = HashSet::new();
        for d in &deliveries {
            if let Some(c) = cause(&d.event) {
                assert!(seen.contains(c), "effect before cause: {}", d.event);
            }
            assert!(seen.insert(id(&d.event)), "no duplicates without faults");
        }
        assert_eq!(stamped_before_cause(&deliveries), 0);
        assert!(stats.orders_finished > 100, "{stats:?}");
    }

    #[test]
    fn every_fault_kind_occurs_and_each_count_is_what_happened() {
        let (deliveries, stats) = run(11, 0.2, 20_000);
        assert!(stats.faults.iter().all(|n| *n > 0), "{stats:?}");
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut seen = HashSet::new();
        let mut effects_first = 0;
        for d in &deliveries {
            *counts.entry(id(&d.event)).or_default() += 1;
            match d.fault {
                Some(Fault::MissingCorrelation) => {
                    assert!(d.event["metadata"].get("correlationId").is_none())
                }
                Some(Fault::ConsumerFailure) => {
                    assert!(d.event["data"].get("customerEmail").is_none())
                }
                _ => {}
            }
            if cause(&d.event).is_some_and(|c| !seen.contains(c)) {
                effects_first += 1;
            }
            seen.insert(id(&d.event));
        }
        let fault = |f: Fault| stats.faults[Fault::ALL.iter().position(|x| *x == f).unwrap()];
        let duplicated = counts.values().filter(|n| **n == 2).count() as u64;
        assert_eq!(duplicated, fault(Fault::DuplicateDelivery));
        assert_eq!(effects_first, fault(Fault::OutOfOrder));
        assert_eq!(stamped_before_cause(&deliveries), fault(Fault::ClockSkew));
    }
}
