//! The threads users' SQL runs on: one per query allowed at once, at a lower scheduling priority.
//!
//! A running query keeps a core busy up to its time limit. On the async workers or the blocking
//! pool it would compete as an equal with ingest's requests and the store's writer; here, at nice
//! [`SQL_NICE`], the kernel gives them the core first whenever they want it, and the query the
//! rest. Its answer is encoded to JSON here too, so a 16 MiB answer costs the async workers
//! nothing.

use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

/// The nice value of the SQL threads (0 is the default; 19 the lowest priority).
pub const SQL_NICE: i32 = 10;

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
                    lower_priority();
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

/// Lowers the calling thread's priority to [`SQL_NICE`] (on Linux, nice is per thread). Lowering
/// needs no privilege; should it fail, the thread runs at the usual priority.
fn lower_priority() {
    // SAFETY: setpriority only reads its integer arguments; `who` 0 is the calling thread.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, SQL_NICE) } != 0;
    if failed {
        tracing::warn!(message = "SQL threads run at the usual priority", error = %std::io::Error::last_os_error());
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
