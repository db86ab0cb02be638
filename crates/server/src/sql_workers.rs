//! The threads users' SQL runs on: one per query allowed at once, by default at the lowest CPU
//! priority.
//!
//! A running query keeps a core busy up to its time limit; it does so here rather than on an async
//! worker, and its answer is encoded to JSON here too, so a 16 MiB answer costs the async workers
//! nothing. Under `SCHED_IDLE` the kernel runs these threads only on a core nothing else wants, so
//! ingest's requests and the writer come first whenever they are runnable. Measured on 2 cores with
//! one busy with other work, ingest p99 beside eight expensive queries was 1.1–1.9× its p99 alone
//! under `SCHED_IDLE` (six runs), 1.2–1.7× at nice 19, 2.3–4.3× at nice 10 and 1.4–9.2× at the
//! usual priority. On a saturated machine a query then progresses slowly and meets its time limit;
//! the watchdog's interrupt still ends it (the thread gets a slice within a few hundred ms).

use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

pub const SQL_THREAD_NAME: &str = "causeway-sql";

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the threads; they end when the last handle is dropped.
#[derive(Clone)]
pub struct SqlWorkers {
    jobs: Arc<Mutex<Sender<Job>>>,
}

impl SqlWorkers {
    /// `idle_priority`: run the threads under `SCHED_IDLE` (else at the usual priority).
    pub fn start(threads: usize, idle_priority: bool) -> SqlWorkers {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(SQL_THREAD_NAME.into())
                .spawn(move || {
                    if idle_priority {
                        lowest_priority();
                    }
                    loop {
                        let job = queue.lock().expect("SQL job queue lock").recv();
                        match job {
                            // A panic ends the job (its caller gets `None`), not the thread.
                            Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                            Err(_) => break,
                        }
                    }
                })
                .expect("spawning an SQL thread");
        }
        SqlWorkers { jobs: Arc::new(Mutex::new(jobs)) }
    }

    /// Runs `f` on one of the threads; `None` if they are gone (or `f` panicked).
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(f());
        });
        self.jobs.lock().expect("SQL job sender lock").send(job).ok()?;
        answered.await.ok()
    }
}

/// Puts the calling thread under `SCHED_IDLE` (a thread's own policy; lowering needs no privilege).
/// Should it fail, the thread runs at the usual priority.
fn lowest_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` outlives the call, which only reads it; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        tracing::warn!(message = "SQL threads run at the usual priority", error = %std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_leaves_its_thread_working() {
        let workers = SqlWorkers::start(1, false);
        assert_eq!(workers.run(|| -> u8 { panic!("a query gone wrong") }).await, None);
        assert_eq!(workers.run(|| 7).await, Some(7));
    }
}
