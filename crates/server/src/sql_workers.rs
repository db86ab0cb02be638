//! The threads users' SQL runs on: one per query allowed at once.
//!
//! A running query keeps a core busy up to its time limit; it does so here rather than on an async
//! worker, and its answer is encoded to JSON here too, so a 16 MiB answer costs the async workers
//! nothing. The threads keep the usual priority: at a lower one (nice 10) ingest p99 beside eight
//! expensive queries came out worse, not better (5.4× and 3.2× its p99 alone, against 2.1× and
//! 0.8× at the usual priority, in alternating runs on 2 busy cores; `SCHED_IDLE` was no better),
//! probably because a preempted query thread can hold what ingest's threads then wait for, such as
//! the process's memory map while it maps and unmaps its multi-megabyte values.

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
    pub fn start(threads: usize) -> SqlWorkers {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(SQL_THREAD_NAME.into())
                .spawn(move || {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_leaves_its_thread_working() {
        let workers = SqlWorkers::start(1);
        assert_eq!(workers.run(|| -> u8 { panic!("a query gone wrong") }).await, None);
        assert_eq!(workers.run(|| 7).await, Some(7));
    }
}
