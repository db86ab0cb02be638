//! The journey engine's in-process benchmark (issue "The journey engine", Done when):
//! throughput on one core, memory per in-flight journey (a counting global allocator), and the
//! per-event cost with 1,000,000 open journeys and their timers against a nearly empty engine.
//!
//! `cargo run --release -p causeway-journey --bin journey-bench` (add `--quick` for a short run,
//! `--watermark-only` for only the comparison of the two clocks below, `--profile [N]` to feed N
//! pre-built events only, with `--watermark` the way the server does on the watermark clock, for a
//! profiler: `valgrind --tool=callgrind`, or `perf record --control fifo:CTL,ACK -D -1` with
//! `CAUSEWAY_PERF_CTL=CTL:ACK`, which records only while the events are fed).
//!
//! Memory: each timed measurement first touches and frees 2 GiB, so that the pages the
//! engine grows into are ones the machine used lately. On the VMs these benchmarks run on, the
//! host backs a guest page only when it is first touched and takes freed pages back within
//! seconds (free page reporting): such a page costs 8-11 µs to fault in against about 2 µs,
//! which made the figures swing by half from run to run with what ran before. Every fault is
//! still counted, and the report prints the machine's fault cost (cold and warm) and the faults
//! per event, from which the cold figure follows. (Running once without the warm-up does not
//! give it: whether the pages are cold depends on what the machine did in the seconds before.)
//!
//! Events are the bundled order-fulfilment model's, shaped like the simulator's: UUID event and
//! correlation ids, causation chains, per-aggregate sequences, an idempotency key on payments.
//! They are built before the clock starts; only `advance` + `ingest` are timed, the way
//! `analyze` drives the engine (the clock is the event-time watermark, advanced before each event).
//!
//! The watermark clock: the same pre-built events fed the way the server feeds its log on its
//! default clock, side by side with the above in one run (`--watermark-only`). Commits of 1,000
//! events share one receive time (the commit's latest event time plus 2 s, so every source stays
//! active and the clock follows the sources' watermarks, firing timers as it goes); per commit
//! `set_clock_into(watermarks.clock(r))`, per event `observe` + `ingest_into`, and after the
//! commit the tick, `set_clock_into(watermarks.clock(r))` again. The sources are the model's
//! services, declared up front, as the server declares them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use causeway_envelope::Event;
use causeway_journey::{Change, Evaluator, WatermarkConfig, Watermarks};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

/// Counts live heap bytes and allocations.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// CPU time this thread has run (`CLOCK_THREAD_CPUTIME_ID`): unlike wall time it does not count
/// time spent waiting for a core that other processes hold.
fn cpu_now() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Minor page faults this thread has taken so far (`getrusage(RUSAGE_THREAD)`): first touches
/// of fresh memory, whose cost is part of the engine's CPU time and varies with the host.
fn page_faults() -> u64 {
    #[repr(C)]
    struct Rusage {
        utime: [i64; 2],
        stime: [i64; 2],
        maxrss: i64,
        ixrss: i64,
        idrss: i64,
        isrss: i64,
        minflt: i64,
        rest: [i64; 9],
    }
    unsafe extern "C" {
        fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    }
    const RUSAGE_THREAD: i32 = 1;
    // SAFETY: all-zero is a valid Rusage, and getrusage writes one through a valid pointer.
    let mut u: Rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { getrusage(RUSAGE_THREAD, &mut u) };
    assert_eq!(rc, 0, "getrusage");
    u.minflt as u64
}

/// SplitMix64, hand-written so a seed means the same thing across upgrades.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff, (b >> 48) & 0x3fff | 0x8000, b & 0xffff_ffff_ffff)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn model() -> causeway_model::Model {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml");
    causeway_model::load(&path).into_result().expect("the example model loads")
}

fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

/// The steps of one order's journey.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// OrderCreated → PaymentProcessed → InventoryReserved → ShipmentCreated → CustomerNotified.
    Fulfilled,
    /// The same without CustomerNotified: a missing reaction, then a stall and a missed deadline.
    NoConfirmation,
    /// The first four steps: open (4 events).
    Open4,
    /// Ten events of journey types, open: partial reservations and shipments.
    Open10,
}

struct Order {
    order_id: String,
    correlation: String,
    last: Option<String>,
    /// Next sequence per aggregate: order, payment, reservation, shipment.
    seq: [i64; 4],
}

fn step_types(shape: Shape) -> &'static [&'static str] {
    match shape {
        Shape::Fulfilled => &["OrderCreated", "PaymentProcessed", "InventoryReserved", "ShipmentCreated", "CustomerNotified"],
        Shape::NoConfirmation | Shape::Open4 => &["OrderCreated", "PaymentProcessed", "InventoryReserved", "ShipmentCreated"],
        Shape::Open10 => &[
            "OrderCreated",
            "PaymentProcessed",
            "InventoryReserved",
            "ShipmentCreated",
            "InventoryReserved",
            "ShipmentCreated",
            "InventoryReserved",
            "ShipmentCreated",
            "InventoryReserved",
            "ShipmentCreated",
        ],
    }
}

fn event(rng: &mut Rng, order: &mut Order, event_type: &str, time: DateTime<Utc>) -> Event {
    let id = rng.uuid();
    let (source, subject, data) = match event_type {
        "OrderCreated" => (
            "order-service",
            order.order_id.clone(),
            json!({"orderId": order.order_id, "customerEmail": "hmac-sha256:5d41402abc4b2a76b9719d911017c592", "amount": 42.5, "currency": "EUR", "lines": [{"sku": "SKU-1", "qty": 1}]}),
        ),
        "PaymentProcessed" => {
            ("payment-service", format!("pay-{}", &order.order_id[4..]), json!({"orderId": order.order_id, "amount": 42.5, "currency": "EUR"}))
        }
        "InventoryReserved" => ("inventory-service", format!("res-{}", &order.order_id[4..]), json!({"orderId": order.order_id, "items": 1})),
        "ShipmentCreated" => (
            "fulfilment-service",
            format!("shp-{}", &order.order_id[4..]),
            json!({"orderId": order.order_id, "carrier": "DHL", "customerEmail": "hmac-sha256:5d41402abc4b2a76b9719d911017c592"}),
        ),
        _ => (
            "notification-service",
            order.order_id.clone(),
            json!({"orderId": order.order_id, "channel": "email", "to": "hmac-sha256:5d41402abc4b2a76b9719d911017c592"}),
        ),
    };
    let aggregate = match event_type {
        "PaymentProcessed" => 1,
        "InventoryReserved" => 2,
        "ShipmentCreated" => 3,
        _ => 0,
    };
    order.seq[aggregate] += 1;
    let sequence = order.seq[aggregate];
    let causation = order.last.replace(id.clone());
    Event {
        id,
        source: source.to_string(),
        event_type: event_type.to_string(),
        time,
        subject: Some(subject),
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        correlation_id: Some(order.correlation.clone()),
        causation_id: causation,
        traceparent: None,
        tracestate: None,
        sequence: Some(sequence),
        idempotency_key: (event_type == "PaymentProcessed").then(|| format!("charge-{}", order.order_id)),
        schema_version: None,
        extensions: Default::default(),
        data: Some(data),
        data_base64: None,
    }
}

/// Builds the events of `orders` journeys, `concurrency` of them interleaved step by step, one
/// millisecond of event time apart, starting at `start` and numbering orders from `first`.
struct Workload {
    rng: Rng,
    next_order: u64,
    clock: DateTime<Utc>,
}

impl Workload {
    fn new(seed: u64, first_order: u64, start: DateTime<Utc>) -> Workload {
        Workload { rng: Rng(seed), next_order: first_order, clock: start }
    }

    /// The events of the next `group` orders, interleaved; `shape` picks each order's shape.
    fn group(&mut self, group: usize, mut shape: impl FnMut(&mut Rng) -> Shape) -> Vec<Event> {
        let mut orders: Vec<(Order, Shape)> = (0..group)
            .map(|_| {
                let n = self.next_order;
                self.next_order += 1;
                let s = shape(&mut self.rng);
                (Order { order_id: format!("ord-{n:09}"), correlation: self.rng.uuid(), last: None, seq: [0; 4] }, s)
            })
            .collect();
        let steps = orders.iter().map(|(_, s)| step_types(*s).len()).max().unwrap_or(0);
        let mut out = Vec::with_capacity(group * steps);
        for step in 0..steps {
            for (order, s) in &mut orders {
                if let Some(t) = step_types(*s).get(step) {
                    self.clock += TimeDelta::milliseconds(1);
                    out.push(event(&mut self.rng, order, t, self.clock));
                }
            }
        }
        out
    }
}

/// Events per commit on the watermark clock (one receive time each).
const COMMIT: usize = 1_000;

/// How far after a commit's latest event time it is received, on the watermark clock: less than
/// the allowed lateness, so the clock is the sources' least watermark, not the receive clock.
const RECEIVE_DELAY: TimeDelta = TimeDelta::seconds(2);

/// Feeds events the way `analyze` does: advance to the watermark, then ingest; or, with
/// `marks`, the way the server does on the watermark clock (see the crate doc).
struct Driver {
    ev: Evaluator,
    changes: Vec<Change>,
    watermark: DateTime<Utc>,
    /// The watermark clock's sources, when the events are fed in commits as the server does.
    marks: Option<Watermarks>,
    /// The receive time of the last commit fed on the watermark clock.
    received: DateTime<Utc>,
    busy: Duration,
    /// Page faults taken while busy.
    faults: u64,
    events: u64,
    allocations: u64,
}

impl Driver {
    fn new() -> Driver {
        Driver::with_model(&model())
    }

    fn with_model(model: &causeway_model::Model) -> Driver {
        Driver {
            ev: Evaluator::new(model),
            changes: Vec::new(),
            watermark: DateTime::<Utc>::MIN_UTC,
            marks: None,
            received: DateTime::<Utc>::MIN_UTC,
            busy: Duration::ZERO,
            faults: 0,
            events: 0,
            allocations: 0,
        }
    }

    /// The server's way on the watermark clock, its sources the model's services.
    fn on_watermarks(model: &causeway_model::Model) -> Driver {
        let services = model.contexts.values().flat_map(|c| c.services.iter().cloned());
        Driver { marks: Some(Watermarks::new(WatermarkConfig::default(), services)), ..Driver::with_model(model) }
    }

    /// Feeds events the way a server does: each one freshly built (here: cloned, untimed, in
    /// chunks of 128) just before the engine sees it, so it is in cache as a just-parsed event is.
    fn feed(&mut self, events: &[Event]) {
        if self.marks.is_some() {
            return self.feed_commits(events);
        }
        for chunk in events.chunks(128) {
            let hot: Vec<Event> = chunk.to_vec();
            self.timed(hot.len(), |d| {
                for e in &hot {
                    if e.time > d.watermark {
                        d.watermark = e.time;
                        d.ev.advance_into(d.watermark, &mut d.changes);
                    }
                    d.ev.ingest_into(e, false, &mut d.changes);
                    d.changes.clear();
                }
            });
        }
    }

    /// [`Driver::feed`] on the watermark clock: commits of [`COMMIT`] events, each received
    /// [`RECEIVE_DELAY`] after its latest event time (and after the commit before); the clock set
    /// before each commit, each event observed then ingested, the tick after the commit.
    fn feed_commits(&mut self, events: &[Event]) {
        for commit in events.chunks(COMMIT) {
            let latest = commit.iter().map(|e| e.time).max().expect("a commit has events");
            let r = (latest + RECEIVE_DELAY).max(self.received + TimeDelta::milliseconds(1));
            self.received = r;
            let chunks = commit.len().div_ceil(128);
            for (k, chunk) in commit.chunks(128).enumerate() {
                let hot: Vec<Event> = chunk.to_vec();
                self.timed(hot.len(), |d| {
                    let marks = d.marks.as_mut().expect("watermarks");
                    if k == 0 {
                        d.ev.set_clock_into(marks.clock(r), &mut d.changes);
                        d.changes.clear();
                    }
                    for e in &hot {
                        marks.observe(&e.source, e.time, r, d.ev.now());
                        d.ev.ingest_into(e, false, &mut d.changes);
                        d.changes.clear();
                    }
                    if k + 1 == chunks {
                        d.ev.set_clock_into(marks.clock(r), &mut d.changes);
                        d.changes.clear();
                    }
                });
            }
        }
    }

    /// Runs `work` on `events` events on the clocks: CPU time, page faults, allocations.
    fn timed(&mut self, events: usize, work: impl FnOnce(&mut Driver)) {
        let allocations = ALLOCS.load(Ordering::Relaxed);
        let faults = page_faults();
        let start = cpu_now();
        work(self);
        self.busy += cpu_now() - start;
        self.faults += page_faults() - faults;
        self.allocations += ALLOCS.load(Ordering::Relaxed) - allocations;
        self.events += events as u64;
    }

    fn ns_per_event(&self) -> f64 {
        self.busy.as_nanos() as f64 / self.events.max(1) as f64
    }
}

/// A realistic stream: 1,000 orders in flight at a time, 95% fulfilled, 5% never confirmed (so
/// missing reactions, stalls and missed deadlines fire as the watermark moves on).
fn mixed(rng: &mut Rng) -> Shape {
    if rng.chance(0.05) { Shape::NoConfirmation } else { Shape::Fulfilled }
}

/// How much memory each timed measurement touches and frees first (see the crate doc above).
const WARM_BYTES: usize = 2 << 30;

/// Touches `bytes` of memory and hands it back to the kernel, so that the engine's growth right
/// after lands on pages the machine used lately: on a VM whose host backs guest memory only on
/// first touch, a page the guest never used costs 8-11 µs to fault in against about 2 µs. The
/// ordinary fault cost is still counted.
fn warm_memory(bytes: usize) {
    drop(touched(bytes));
}

/// `bytes` of memory, every page written.
fn touched(bytes: usize) -> Vec<u8> {
    std::hint::black_box(vec![1u8; bytes])
}

/// CPU time per 4 KiB page of touching `bytes` of memory, first as the process's first touch of
/// that much, then again right after it was freed: what a page fault costs on this machine, cold
/// and warm.
fn fault_cost(bytes: usize) -> (f64, f64) {
    let per_page = || {
        let start = cpu_now();
        let block = touched(bytes);
        let spent = cpu_now() - start;
        drop(block);
        spent.as_nanos() as f64 / 1e3 / (bytes / 4096) as f64
    };
    let cold = per_page();
    (cold, per_page())
}

/// Runs `rounds` rounds, each giving a rate and a result: the median rate, the least, the
/// greatest, and the last round's result. The machine's speed drifts from one second to the
/// next (a shared host), so one round is not a measurement.
fn rounds<T>(rounds: usize, mut round: impl FnMut() -> (f64, T)) -> (f64, f64, f64, T) {
    let mut rates = Vec::with_capacity(rounds);
    let mut last = None;
    for _ in 0..rounds {
        let (rate, result) = round();
        rates.push(rate);
        last = Some(result);
    }
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], rates[0], rates[rates.len() - 1], last.expect("at least one round"))
}

/// The mixed stream built as it goes, fed to a fresh evaluator until `events_wanted` events.
fn throughput(events_wanted: u64) -> Driver {
    warm_memory(WARM_BYTES);
    let mut d = Driver::new();
    let mut w = Workload::new(7, 1, epoch());
    while d.events < events_wanted {
        let batch = w.group(1_000, mixed);
        d.feed(&batch);
    }
    d
}

/// The mixed stream's first `n` events (rounded up to whole groups).
fn mixed_events(n: usize) -> Vec<Event> {
    let mut w = Workload::new(7, 1, epoch());
    let mut events = Vec::new();
    while events.len() < n {
        events.extend(w.group(1_000, mixed));
    }
    events
}

/// Pre-built events fed once to a fresh evaluator.
fn prebuilt(events: &[Event]) -> Driver {
    prebuilt_with(events, Driver::new())
}

/// Pre-built events fed once to `d`, a fresh evaluator.
fn prebuilt_with(events: &[Event], mut d: Driver) -> Driver {
    warm_memory(WARM_BYTES);
    let perf = perf_control();
    perf_command(&perf, "enable");
    d.feed(events);
    perf_command(&perf, "disable");
    d
}

/// `perf record --control fifo:CTL,ACK` with `CAUSEWAY_PERF_CTL=CTL:ACK` in the environment
/// records only while the pre-built events are fed, not while they are built.
fn perf_control() -> Option<(std::fs::File, std::fs::File)> {
    let spec = std::env::var("CAUSEWAY_PERF_CTL").ok()?;
    let (ctl, ack) = spec.split_once(':').expect("CAUSEWAY_PERF_CTL is CTL:ACK");
    let ctl = std::fs::OpenOptions::new().write(true).open(ctl).expect("perf control fifo");
    let ack = std::fs::File::open(ack).expect("perf ack fifo");
    Some((ctl, ack))
}

fn perf_command(perf: &Option<(std::fs::File, std::fs::File)>, command: &str) {
    use std::io::{Read, Write};
    if let Some((ctl, ack)) = perf {
        let (mut ctl, mut ack): (&std::fs::File, &std::fs::File) = (ctl, ack);
        writeln!(ctl, "{command}").expect("perf control");
        let mut reply = [0u8; 5];
        ack.read_exact(&mut reply).expect("perf ack");
    }
}

/// Live bytes per journey after `n` journeys of `shape`, all in flight (events dropped), the
/// evaluator's own account of them per journey, and allocations per journey.
fn memory(n: usize, shape: Shape) -> (f64, causeway_journey::Memory, f64) {
    let mut d = Driver::new();
    let mut w = Workload::new(11, 1, epoch());
    let before = live();
    let mut allocs = 0;
    let mut done = 0;
    while done < n {
        let group = 10_000.min(n - done);
        let batch = w.group(group, |_| shape);
        // Without advancing the clock: every journey stays in flight with its timers pending.
        let allocs_before = ALLOCS.load(Ordering::Relaxed);
        for e in &batch {
            d.ev.ingest_into(e, false, &mut d.changes);
            d.changes.clear();
        }
        allocs += ALLOCS.load(Ordering::Relaxed) - allocs_before;
        done += group;
    }
    let stats = d.ev.stats();
    assert_eq!(stats.in_flight as usize, n, "every journey in flight");
    assert_eq!(stats.findings, 0, "no findings: {:?}", d.ev.findings().first());
    let per = (live() - before) as f64 / n as f64;
    let m = d.ev.memory();
    let per_journey = |b: usize| b / n;
    let m = causeway_journey::Memory {
        instances: per_journey(m.instances),
        records: per_journey(m.records),
        obligations: per_journey(m.obligations),
        indexes: per_journey(m.indexes),
        sequences: per_journey(m.sequences),
        timers: per_journey(m.timers),
        findings: per_journey(m.findings),
        pending: per_journey(m.pending),
    };
    drop(d);
    (per, m, allocs as f64 / n as f64)
}

/// Per-event cost of the same stream on an engine already holding `preload` journeys of
/// `shape`: open ones keep their timers pending, completed ones have none left, and both fill
/// the indexes alike.
fn with_preloaded(preload: usize, shape: Shape, stream_events: u64) -> (f64, u64, Duration) {
    let mut d = Driver::with_model(&long_windows());
    // Stamped from 100 minutes before the stream on, a millisecond apart (a million journeys
    // take 67–83 minutes): with long windows none of the open journeys' deadlines (reaction 2h,
    // stall 4h, completion 2d) passes while the stream (17 minutes of event time per million
    // events) runs.
    let start = epoch() - TimeDelta::minutes(100);
    let mut pre = Workload::new(99, 5_000_000_000, start);
    let mut made = 0;
    while made < preload {
        let group = 10_000.min(preload - made);
        let batch = pre.group(group, |_| shape);
        for e in &batch {
            d.ev.ingest_into(e, false, &mut d.changes);
            d.changes.clear();
        }
        made += group;
    }
    assert!(pre.clock < epoch(), "the preloaded journeys precede the stream");
    warm_memory(WARM_BYTES);
    d.busy = Duration::ZERO;
    d.faults = 0;
    d.events = 0;
    let mut w = Workload::new(7, 1, epoch());
    while d.events < stream_events {
        let batch = w.group(1_000, |_| Shape::Fulfilled);
        d.feed(&batch);
    }
    let ns = d.ns_per_event();
    assert_eq!(d.ev.stats().findings, 0, "nothing was due during the stream: {:?}", d.ev.findings().first());
    // Then let every open journey's deadlines pass at once.
    let fire_start = cpu_now();
    let far = w.clock + TimeDelta::days(3);
    d.ev.advance_into(far, &mut d.changes);
    let fired = cpu_now() - fire_start;
    (ns, d.changes.len() as u64, fired)
}

/// The bundled model with long windows, as journeys that stay open for hours have (loans,
/// claims): reactions within 2h, a stall after 4h, completion within 2d.
fn long_windows() -> causeway_model::Model {
    let mut m = model();
    for p in m.policies.values_mut() {
        p.within_ms = 2 * 3_600_000;
    }
    for j in m.journeys.values_mut() {
        j.stall_after_ms = Some(4 * 3_600_000);
        j.complete_within_ms = Some(2 * 86_400_000);
    }
    m
}

/// The same stream after `n` completed journeys (no timers left), after `n` open ones (their
/// timers pending), and after only 1,000 (small indexes); each the best of `rounds`, alternating,
/// to see past a shared machine's noise.
fn open_comparison(n: usize, rounds: usize) {
    let stream = 1_000_000;
    let (mut done, mut open, mut small) = (f64::MAX, f64::MAX, f64::MAX);
    let mut fired = (0, Duration::ZERO);
    for _ in 0..rounds {
        done = done.min(with_preloaded(n, Shape::Fulfilled, stream).0);
        let (ns, changes, time) = with_preloaded(n, Shape::Open4, stream);
        open = open.min(ns);
        fired = (changes, time);
        small = small.min(with_preloaded(1_000, Shape::Open4, stream).0);
    }
    println!(
        "per-event cost of a {stream}-event stream, best of {rounds}: after {n} completed journeys {done:.0} ns; after {n} open journeys with their timers pending {open:.0} ns ({:+.0}%); after 1,000 open journeys {small:.0} ns",
        (open / done - 1.0) * 100.0
    );
    println!(
        "then every deadline of the {n} open journeys passing at once: {} changes in {:.2} s ({:.0} ns per change)",
        fired.0,
        fired.1.as_secs_f64(),
        fired.1.as_nanos() as f64 / fired.0.max(1) as f64
    );
}

/// One round of [`watermark_comparison`]'s side: the rate, the findings raised, and on the
/// watermark clock the sources known and the events judged late.
struct Side {
    rate: f64,
    findings: u64,
    sources: usize,
    late: u64,
}

fn side(events: &[Event], d: Driver) -> Side {
    let d = prebuilt_with(events, d);
    let (sources, late) = d.marks.as_ref().map_or((0, 0), |m| (m.sources(d.received).len(), m.late_events()));
    Side { rate: 1e9 / d.ns_per_event(), findings: d.ev.stats().findings, sources, late }
}

/// The pre-built events fed the way `analyze` does against the way the server does on the
/// watermark clock, the two sides alternating round by round (which goes first too), each round
/// a fresh evaluator: both medians, and the ratio watermark / analyze-style.
fn watermark_comparison(events: &[Event], n: usize) {
    let model = model();
    let mut rounds: Vec<(Side, Side)> = Vec::with_capacity(n);
    for round in 0..n {
        let analyze = || side(events, Driver::with_model(&model));
        let server = || side(events, Driver::on_watermarks(&model));
        rounds.push(if round % 2 == 0 {
            let a = analyze();
            (a, server())
        } else {
            let w = server();
            (analyze(), w)
        });
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (ma, ..) = median(rounds.iter().map(|(a, _)| a.rate).collect());
    let (mw, ..) = median(rounds.iter().map(|(_, w)| w.rate).collect());
    let (mr, low, high) = median(rounds.iter().map(|(a, w)| w.rate / a.rate).collect());
    let (a, w) = rounds.last().expect("at least one round");
    println!(
        "throughput on the watermark clock: {mw:.0} events/s against {ma:.0} analyze-style, ratio {:.3} (target ≥ 0.95), medians of {n} rounds alternating over the same {} pre-built events; each round's ratio: median {mr:.3} ({low:.3}–{high:.3}); commits of {COMMIT} events received 2 s after their latest event time, {} sources, {} late events, findings {} against {} analyze-style",
        mw / ma,
        events.len(),
        w.sources,
        w.late,
        w.findings,
        a.findings
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--watermark-only") {
        watermark_comparison(&mixed_events(1_000_000), if quick { 3 } else { 7 });
        return;
    }
    if args.iter().any(|a| a == "--open-only") {
        open_comparison(1_000_000, 3);
        return;
    }
    if args.iter().any(|a| a == "--profile") {
        // All events built first, then fed: a profile of this run separates the two cleanly.
        let n: usize = args.iter().skip_while(|a| *a != "--profile").nth(1).and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
        let events = mixed_events(n);
        let watermark = args.iter().any(|a| a == "--watermark");
        let d = if watermark { prebuilt_with(&events, Driver::on_watermarks(&model())) } else { prebuilt(&events) };
        println!(
            "profile run{}: {} events, {:.0} ns/event, {:.3} page faults per event, {:.2} allocations per event",
            if watermark { " on the watermark clock" } else { "" },
            d.events,
            d.ns_per_event(),
            d.faults as f64 / d.events as f64,
            d.allocations as f64 / d.events as f64
        );
        return;
    }
    let (events_wanted, open) = if quick { (1_000_000, 100_000) } else { (5_000_000, 1_000_000) };
    // Hash tables double: per-journey bytes depend on where a size falls between two doublings,
    // so two sizes are shown.
    let mem_sizes: &[usize] = if quick { &[50_000] } else { &[200_000, 1_000_000] };

    println!("# causeway journey engine benchmark (in process, one core)\n");
    let (cold, warm) = fault_cost(1 << 30);
    println!(
        "page faults on this machine: {cold:.2} µs per 4 KiB page of memory first touched by this process, {warm:.2} µs right after the same amount was freed; each timed measurement below starts by touching and freeing 2 GiB, so the engine's growth pays the second"
    );
    let events = mixed_events(1_000_000);
    let n = if quick { 3 } else { 7 };
    let (median, low, high, d) = rounds(n, || {
        let d = prebuilt(&events);
        (1e9 / d.ns_per_event(), d)
    });
    println!(
        "throughput, engine alone: {median:.0} events/s ({:.0} ns/event), median of {n} rounds ({low:.0}–{high:.0}), over {} pre-built events (1,000 orders in flight, 5% never confirmed), {:.2} allocations and {:.3} page faults per event",
        1e9 / median,
        d.events,
        d.allocations as f64 / d.events as f64,
        d.faults as f64 / d.events as f64
    );
    drop(d);
    watermark_comparison(&events, n);
    drop(events);
    let n = if quick { 1 } else { 3 };
    let (median, low, high, d) = rounds(n, || {
        let d = throughput(events_wanted);
        (1e9 / d.ns_per_event(), d)
    });
    let stats = d.ev.stats();
    println!(
        "throughput, long stream built as it goes: {median:.0} events/s ({:.0} ns/event), median of {n} rounds ({low:.0}–{high:.0}), over {} events, 1,000 orders in flight, 5% never confirmed, {:.3} page faults per event",
        1e9 / median,
        d.events,
        d.faults as f64 / d.events as f64
    );
    println!(
        "  journeys {} (in flight {}, stalled {}, completed {}), findings {} (open {}), deadline-queue entries {}",
        stats.instances, stats.in_flight, stats.stalled, stats.completed, stats.findings, stats.open_findings, stats.timers
    );
    drop(d);

    for (label, shape) in [("4 events (created → shipped)", Shape::Open4), ("10 events (partial reservations and shipments)", Shape::Open10)] {
        for &n in mem_sizes {
            let (bytes, m, allocs) = memory(n, shape);
            println!(
                "memory per in-flight journey of {label}, {n} journeys: {bytes:.0} bytes (instance {}, records {}, obligations {}, indexes {}, sequences {}, timers {}); {allocs:.1} allocations",
                m.instances, m.records, m.obligations, m.indexes, m.sequences, m.timers
            );
        }
    }

    open_comparison(open, if quick { 1 } else { 3 });
}
