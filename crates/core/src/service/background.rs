//! Threads of their own for work that must give way to generation: reading and rendering pages
//! of the audit log (SPEC section 13: readers of the log cannot push generation's p99).
//!
//! On Linux they run under the `SCHED_IDLE` policy, so that a thread of the data plane that
//! wakes up takes the core from them at once. A bounded number of them (the audit search's
//! semaphore) keeps readers from taking more than their share of the cores; the policy keeps
//! them from taking a core at the moment a request arrives. Under the default policy a running
//! thread keeps its core for the rest of its time slice, even at nice 10: with 32 readers of
//! the log, `_generate`'s p99 was 4 ms against 0.6 ms quiet, the slice, not the work. The
//! price: while generation keeps every core busy, readers of the log wait for it to pause.
//! Elsewhere, or when the policy cannot be set, the threads run at normal priority.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

/// A job for a thread of the pool.
type Job = Box<dyn FnOnce() + Send>;

/// A fixed number of threads that run jobs in the order they come, at the lowest priority.
pub(crate) struct Background {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("threads", &self.threads)
            .finish()
    }
}

impl Background {
    /// `threads` threads (at least one) named `name-N`; they end when the pool is dropped.
    pub(crate) fn start(threads: usize, name: &str) -> std::io::Result<Background> {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    lowest_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match next {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Background { jobs, threads })
    }

    /// Runs `work` on a thread of the pool and waits for it without holding an async worker;
    /// `None` when it panicked (the thread goes on) or the pool is gone.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
                let _ = answer.send(value);
            }
        });
        self.jobs.send(job).ok()?;
        answered.await.ok()
    }
}

/// Puts the calling thread under `SCHED_IDLE` (Linux; needs no privilege).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        ) {
            tracing::warn!(error = ?e, "cannot lower a background thread's priority; it runs at normal priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pools_threads_and_a_panic_loses_no_thread() {
        let pool = Background::start(1, "test-background").unwrap();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await;
        assert_eq!(name, Some(Some("test-background-0".to_owned())));
        assert_eq!(pool.run(|| -> u8 { panic!("a job fails") }).await, None);
        assert_eq!(pool.run(|| 7).await, Some(7), "the one thread goes on");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_threads_run_under_sched_idle() {
        let pool = Background::start(1, "test-idle").unwrap();
        let policy = pool
            .run(|| thread_priority::unix::thread_schedule_policy().unwrap())
            .await
            .unwrap();
        assert_eq!(
            policy,
            thread_priority::unix::ThreadSchedulePolicy::Normal(
                thread_priority::unix::NormalThreadSchedulePolicy::Idle
            )
        );
    }
}
