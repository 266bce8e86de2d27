//! An elastic worker pool for handlers: a job never waits behind a slow
//! handler while the pool is below its cap, because a submit that finds no
//! idle worker starts one; workers idle for a while above the minimum exit.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Workers kept even when idle.
const MIN_WORKERS: usize = 2;
/// How long a surplus worker waits for work before exiting.
const IDLE_EXIT: Duration = Duration::from_secs(10);
/// Stack of a worker thread (handlers run there).
const WORKER_STACK: usize = 1 << 20;

struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    stop: bool,
}

pub(crate) struct Pool {
    state: Mutex<State>,
    cv: Condvar,
    max: usize,
    label: String,
}

impl Pool {
    pub(crate) fn new(max: usize, label: String) -> Arc<Pool> {
        Arc::new(Pool {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: 0,
                threads: 0,
                stop: false,
            }),
            cv: Condvar::new(),
            max: max.max(1),
            label,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `job` on a worker.
    pub(crate) fn submit(self: &Arc<Self>, job: Job) {
        let mut st = self.lock();
        st.jobs.push_back(job);
        if st.idle >= st.jobs.len() {
            self.cv.notify_one();
            return;
        }
        if st.threads < self.max {
            st.threads += 1;
            drop(st);
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ipckit-svc-{}", self.label))
                .stack_size(WORKER_STACK)
                .spawn(move || me.work());
            if spawned.is_err() {
                // Could not start a thread: the queued job waits for a
                // running worker (there is at least one unless none ever
                // started, which the next submit retries).
                self.lock().threads -= 1;
            }
        } else {
            self.cv.notify_one();
        }
    }

    fn work(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                job();
                st = self.lock();
                continue;
            }
            if st.stop {
                break;
            }
            st.idle += 1;
            let (next, timeout) = self
                .cv
                .wait_timeout(st, IDLE_EXIT)
                .unwrap_or_else(|p| p.into_inner());
            st = next;
            st.idle -= 1;
            if timeout.timed_out() && st.jobs.is_empty() && st.threads > MIN_WORKERS {
                break;
            }
        }
        st.threads -= 1;
    }

    /// Let workers exit once the queue is empty.
    pub(crate) fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_all();
    }
}
