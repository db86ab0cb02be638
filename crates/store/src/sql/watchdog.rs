//! The deadline of every running user query, kept by one thread for the whole process.
//!
//! A query registers its deadline, its connection's interrupt handle and its [`Bounds`] before it
//! is prepared and deregisters when its statement is finished. At the deadline the thread marks
//! the bounds cancelled (which the replaced functions read inside their loops) and calls
//! `sqlite3_interrupt` (which SQLite reads between VM steps and in the parser). Both happen under
//! the lock that deregistration takes, so once [`Watch`] is dropped nothing can interrupt the
//! connection's next use; SQLite clears a stray interrupt anyway when the next statement starts on
//! a connection with none running.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use rusqlite::{Connection, InterruptHandle};

use super::functions::Bounds;

pub(crate) const WATCHDOG_THREAD_NAME: &str = "causeway-sql-watchdog";

struct Entry {
    interrupt: InterruptHandle,
    bounds: Arc<Bounds>,
}

#[derive(Default)]
struct Deadlines {
    next_id: u64,
    queue: BTreeMap<(Instant, u64), Entry>,
}

struct Watchdog {
    deadlines: Mutex<Deadlines>,
    changed: Condvar,
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let dog: &'static Watchdog = Box::leak(Box::new(Watchdog { deadlines: Mutex::new(Deadlines::default()), changed: Condvar::new() }));
        std::thread::Builder::new().name(WATCHDOG_THREAD_NAME.into()).spawn(move || dog.run()).expect("spawning the SQL watchdog thread");
        dog
    })
}

impl Watchdog {
    fn run(&self) {
        let mut d = self.deadlines.lock().expect("watchdog lock");
        loop {
            let now = Instant::now();
            while let Some(entry) = d.queue.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let Entry { interrupt, bounds } = entry.remove();
                bounds.cancelled.store(true, Ordering::Relaxed);
                interrupt.interrupt();
            }
            d = match d.queue.keys().next() {
                Some(&(deadline, _)) => self.changed.wait_timeout(d, deadline - now).expect("watchdog lock").0,
                None => self.changed.wait(d).expect("watchdog lock"),
            };
        }
    }
}

/// A registered deadline; dropping it deregisters.
pub(crate) struct Watch {
    key: (Instant, u64),
}

/// Watches the query about to run on `conn` until the returned guard is dropped. `max_value` is
/// the value limit the replaced functions apply.
pub(crate) fn watch(deadline: Instant, conn: &Connection, bounds: &Arc<Bounds>, max_value: usize) -> Watch {
    bounds.cancelled.store(false, Ordering::Relaxed);
    bounds.max_value.store(max_value, Ordering::Relaxed);
    let dog = watchdog();
    let mut d = dog.deadlines.lock().expect("watchdog lock");
    let key = (deadline, d.next_id);
    d.next_id += 1;
    d.queue.insert(key, Entry { interrupt: conn.get_interrupt_handle(), bounds: bounds.clone() });
    if d.queue.keys().next() == Some(&key) {
        dog.changed.notify_one();
    }
    Watch { key }
}

impl Drop for Watch {
    fn drop(&mut self) {
        watchdog().deadlines.lock().expect("watchdog lock").queue.remove(&self.key);
    }
}
