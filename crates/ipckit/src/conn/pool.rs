//! An elastic worker pool for handlers: a job never waits behind a slow
//! handler while the pool is below its cap (a submit that finds no idle
//! worker starts one), and idle workers retire.
//!
//! Idle workers wait on a stack: a new job goes to the worker that became
//! idle last, so under light traffic the same few workers do the work and
//! the others time out and exit (with a shared condition variable, light
//! traffic would wake each idle worker in turn and none would ever retire).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Workers kept even when idle.
const MIN_WORKERS: usize = 1;
/// How long an idle worker waits for work before exiting.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(5);
/// Stack of a worker thread (handlers run there).
const WORKER_STACK: usize = 1 << 20;

/// What an idle worker is handed.
enum Msg {
    Job(Job),
    Stop,
}

/// One idle worker's mailbox.
#[derive(Default)]
struct Parked {
    msg: Mutex<Option<Msg>>,
    cv: Condvar,
}

impl Parked {
    fn give(&self, m: Msg) {
        *lock(&self.msg) = Some(m);
        self.cv.notify_one();
    }

    /// Wait for a message at most `limit` (`None`: forever).
    fn take(&self, limit: Option<Duration>) -> Option<Msg> {
        let start = std::time::Instant::now();
        let mut slot = lock(&self.msg);
        loop {
            if let Some(m) = slot.take() {
                return Some(m);
            }
            slot = match limit {
                None => self.cv.wait(slot).unwrap_or_else(|p| p.into_inner()),
                Some(l) => {
                    let left = l.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return None;
                    }
                    self.cv
                        .wait_timeout(slot, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

struct State {
    jobs: VecDeque<Job>,
    /// Idle workers, the most recently idle last.
    idle: Vec<Arc<Parked>>,
    threads: usize,
    stop: bool,
}

pub(crate) struct Pool {
    state: Mutex<State>,
    max: usize,
    label: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    /// A pool of at most `max` workers named `ipckit-<label>`.
    pub(crate) fn new(max: usize, label: String) -> Arc<Pool> {
        Arc::new(Pool {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: Vec::new(),
                threads: 0,
                stop: false,
            }),
            max: max.max(1),
            label,
        })
    }

    /// Run `job` on a worker: the most recently idle one, else a new one
    /// (below the cap), else the first worker to finish.
    pub(crate) fn submit(self: &Arc<Self>, job: Job) {
        let mut st = lock(&self.state);
        if let Some(p) = st.idle.pop() {
            drop(st);
            p.give(Msg::Job(job));
            return;
        }
        st.jobs.push_back(job);
        if st.threads < self.max {
            st.threads += 1;
            drop(st);
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ipckit-{}", self.label))
                .stack_size(WORKER_STACK)
                .spawn(move || me.work());
            if spawned.is_err() {
                // No thread: the job stays queued for a running worker.
                lock(&self.state).threads -= 1;
            }
        }
    }

    fn work(self: Arc<Self>) {
        let me = Arc::new(Parked::default());
        loop {
            let mut st = lock(&self.state);
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                job();
                continue;
            }
            if st.stop {
                st.threads -= 1;
                return;
            }
            st.idle.push(me.clone());
            drop(st);
            let msg = match me.take(Some(IDLE_EXIT)) {
                Some(m) => m,
                None => {
                    let mut st = lock(&self.state);
                    match st.idle.iter().position(|p| Arc::ptr_eq(p, &me)) {
                        Some(i) => {
                            st.idle.remove(i);
                            if st.threads > MIN_WORKERS {
                                st.threads -= 1;
                                return;
                            }
                            continue;
                        }
                        // A submit popped us just now: its job is coming.
                        None => {
                            drop(st);
                            me.take(None).expect("waits until given")
                        }
                    }
                }
            };
            match msg {
                Msg::Job(job) => job(),
                Msg::Stop => {
                    lock(&self.state).threads -= 1;
                    return;
                }
            }
        }
    }

    /// Let workers exit once the queue is empty.
    pub(crate) fn stop(&self) {
        let mut st = lock(&self.state);
        st.stop = true;
        for p in st.idle.drain(..) {
            p.give(Msg::Stop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_and_caps_threads() {
        let pool = Pool::new(3, "test".into());
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..20 {
            let tx = tx.clone();
            pool.submit(Box::new(move || tx.send(i).unwrap()));
        }
        let mut got: Vec<i32> = (0..20)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        assert!(lock(&pool.state).threads <= 3);
        pool.stop();
    }
}
