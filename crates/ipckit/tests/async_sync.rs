//! The async sync objects (`ipckit::sync::tokio`) across real processes:
//! a blocking peer process plays one role, the async side runs in the
//! test. Includes cancellation: a dropped pending lock / acquire / wait
//! leaves nothing locked and loses no unit or signal.
//!
//! Children are this test binary re-executed in a role (`child_role`);
//! they take commands on stdin and report on stdout. Every wait is bounded
//! by [`DEADLINE`]; a pending future is made pending (and then dropped)
//! with a short `tokio::time::timeout`, whose length only decides how long
//! the future was pending, never what the test asserts.
#![cfg(feature = "tokio")]

mod support;

use std::time::Duration;

use ipckit::sync::tokio::{Event, Lock, Mutex, Semaphore};
use ipckit::sync::{self as blocking, EventOptions, MutexOptions, SemaphoreOptions};
use ipckit::{ErrorKind, Namespace};
use support::{say, wait_until, TestNs, DEADLINE};

/// How long a future is left pending before it is dropped.
const PENDING: Duration = Duration::from_millis(150);

/// The child side of every test, chosen by the role (see `support::role`).
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    match role.as_str() {
        // Lock mutex ARG0 (blocking), say `LOCKED clean|abandoned`; on
        // `unlock` unlock and say `UNLOCKED`; exit when stdin closes.
        "mutex-holder" => {
            let m = MutexOptions::new().namespace(&ns).open(&args[0]).unwrap();
            let lock = m.lock_timeout(DEADLINE).unwrap();
            say(if lock.is_abandoned() {
                "LOCKED abandoned"
            } else {
                "LOCKED clean"
            });
            let mut lock = Some(lock);
            for line in std::io::stdin().lines() {
                if line.unwrap() == "unlock" {
                    drop(lock.take());
                    say("UNLOCKED");
                }
            }
        }
        // Lock mutex ARG0 (blocking, bounded), say how, unlock, exit.
        "mutex-lock-once" => {
            let m = MutexOptions::new().namespace(&ns).open(&args[0]).unwrap();
            let lock = m.lock_timeout(DEADLINE).unwrap();
            say(if lock.is_abandoned() {
                "GOT abandoned"
            } else {
                "GOT clean"
            });
        }
        // Try-lock mutex ARG0 once: `TRY none|clean|abandoned`.
        "mutex-try" => {
            let m = MutexOptions::new().namespace(&ns).open(&args[0]).unwrap();
            say(match m.try_lock().unwrap() {
                None => "TRY none",
                Some(l) if l.is_abandoned() => "TRY abandoned",
                Some(_) => "TRY clean",
            });
        }
        // Lock mutex ARG0 with the ASYNC mutex, say `LOCKED`, hold it until
        // killed.
        "async-mutex-holder" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let m = Mutex::new(MutexOptions::new().namespace(&ns).open(&args[0]).unwrap());
                let _lock = m.lock().await.unwrap();
                say("LOCKED");
                support::wait_for_parent();
            });
        }
        // On `release N`, release N units of semaphore ARG0, say `RELEASED`.
        "sem-releaser" => {
            let s = SemaphoreOptions::new()
                .namespace(&ns)
                .open(&args[0])
                .unwrap();
            say("READY");
            for line in std::io::stdin().lines() {
                let line = line.unwrap();
                if let Some(n) = line.strip_prefix("release ") {
                    s.release(n.parse().unwrap()).unwrap();
                    say("RELEASED");
                }
            }
        }
        // Acquire one unit of semaphore ARG0 (blocking, bounded): `ACQUIRED`.
        "sem-acquire-once" => {
            let s = SemaphoreOptions::new()
                .namespace(&ns)
                .open(&args[0])
                .unwrap();
            s.acquire_timeout(DEADLINE).unwrap();
            say("ACQUIRED");
        }
        // Set event ARG0 on each `set`, say `SET`.
        "event-setter" => {
            let e = EventOptions::new().namespace(&ns).open(&args[0]).unwrap();
            say("READY");
            for line in std::io::stdin().lines() {
                if line.unwrap() == "set" {
                    e.set();
                    say("SET");
                }
            }
        }
        // Wait for event ARG0 (blocking, bounded): `WOKEN`.
        "event-wait-once" => {
            let e = EventOptions::new().namespace(&ns).open(&args[0]).unwrap();
            e.wait_timeout(DEADLINE).unwrap();
            say("WOKEN");
        }
        other => panic!("unknown role {other}"),
    }
}

/// A runtime with two workers (the machine has two cores).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `fut`, bounded by [`DEADLINE`].
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?}: {what}"))
}

/// Poll `fut` once (so its helper thread starts) and check it is pending.
async fn started<F: std::future::Future>(fut: &mut std::pin::Pin<Box<F>>) {
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    assert!(
        first.is_pending(),
        "completed although the object was not available"
    );
}

/// Leave `fut` pending for [`PENDING`], then drop it; panics if it
/// completed (the test set things up so it cannot).
async fn pending_then_dropped<T>(fut: impl std::future::Future<Output = T>) {
    assert!(
        tokio::time::timeout(PENDING, fut).await.is_err(),
        "the future completed although the object was not available"
    );
}

// ---------------------------------------------------------------- mutex

#[test]
fn async_lock_waits_for_a_blocking_holder_in_another_process_and_gets_it_on_unlock() {
    let t = TestNs::new().remove_shm_on_drop(&["m"]);
    let m = Mutex::new(MutexOptions::new().namespace(&t.ns).create("m").unwrap());
    let mut holder = t.talk("mutex-holder", &["m"]);
    assert_eq!(holder.stdout_line("LOCKED"), "LOCKED clean");
    runtime().block_on(async {
        assert!(m.try_lock().unwrap().is_none(), "held by the child");
        let mut fut = Box::pin(m.lock());
        started(&mut fut).await;
        holder.tell("unlock");
        holder.stdout_line("UNLOCKED");
        let lock = bounded("the async lock after the child unlocked", fut)
            .await
            .unwrap();
        assert!(!lock.is_abandoned());
        // Held now: another process cannot take it.
        let mut probe = t.start("mutex-try", &["m"]);
        assert_eq!(probe.stdout_line("TRY"), "TRY none");
    });
    // Unlocked when the guard dropped: another process gets it clean.
    let mut next = t.start("mutex-lock-once", &["m"]);
    assert_eq!(next.stdout_line("GOT"), "GOT clean");
}

#[test]
fn dropped_pending_lock_leaves_the_mutex_free_for_the_next_process() {
    let t = TestNs::new().remove_shm_on_drop(&["m"]);
    let m = Mutex::new(MutexOptions::new().namespace(&t.ns).create("m").unwrap());
    let mut holder = t.talk("mutex-holder", &["m"]);
    assert_eq!(holder.stdout_line("LOCKED"), "LOCKED clean");
    let rt = runtime();
    rt.block_on(async {
        // Several cancelled lock futures, still waiting in their helpers
        // when the holder unlocks (one of them may take the wake-up, or
        // the lock itself, and must give it on).
        for _ in 0..3 {
            pending_then_dropped(m.lock()).await;
        }
    });
    holder.tell("unlock");
    holder.stdout_line("UNLOCKED");
    let mut next = t.start("mutex-lock-once", &["m"]);
    assert_eq!(next.stdout_line("GOT"), "GOT clean");
    next.wait_success(DEADLINE);
    // And this process can still lock it (nothing of ours holds it).
    rt.block_on(async {
        let lock = bounded("a lock after the cancellations", m.lock()).await;
        assert!(!lock.unwrap().is_abandoned());
    });
}

#[test]
fn dropped_lock_future_that_won_the_lock_unlocks_it() {
    // A lock that completes while nobody polls its future any more: the
    // helper takes the mutex, finds the future gone and must unlock.
    let t = TestNs::new().remove_shm_on_drop(&["m"]);
    let m = Mutex::new(MutexOptions::new().namespace(&t.ns).create("m").unwrap());
    let mut holder = t.talk("mutex-holder", &["m"]);
    assert_eq!(holder.stdout_line("LOCKED"), "LOCKED clean");
    let rt = runtime();
    let mut fut = Box::pin(m.lock());
    // Poll once so its helper is waiting, then stop polling.
    rt.block_on(started(&mut fut));
    holder.tell("unlock");
    holder.stdout_line("UNLOCKED");
    // The helper takes the lock for the (unpolled but alive) future.
    wait_until(DEADLINE, "the helper took the lock", || {
        m.get_ref().try_lock().unwrap().is_none()
    });
    let mut probe = t.start("mutex-try", &["m"]);
    assert_eq!(probe.stdout_line("TRY"), "TRY none");
    drop(fut);
    let mut next = t.start("mutex-lock-once", &["m"]);
    assert_eq!(next.stdout_line("GOT"), "GOT clean");
}

#[test]
fn async_lock_takes_over_from_a_killed_blocking_holder_as_abandoned() {
    let t = TestNs::new().remove_shm_on_drop(&["m"]);
    let m = Mutex::new(MutexOptions::new().namespace(&t.ns).create("m").unwrap());
    let mut holder = t.talk("mutex-holder", &["m"]);
    assert_eq!(holder.stdout_line("LOCKED"), "LOCKED clean");
    runtime().block_on(async {
        pending_then_dropped(m.lock()).await;
        holder.kill();
        let lock = bounded("the lock of a killed holder", m.lock())
            .await
            .unwrap();
        assert!(matches!(lock, Lock::Abandoned(_)), "expected abandoned");
        drop(lock);
        assert!(!m.lock().await.unwrap().is_abandoned());
    });
}

#[test]
fn async_holder_counts_as_alive_then_as_dead_once_its_process_is_killed() {
    // The async lock's owner is the process (not the worker thread that
    // happened to run the task): a blocking locker elsewhere waits past
    // the owner checks while it lives, and takes over when it dies.
    let t = TestNs::new().remove_shm_on_drop(&["m"]);
    let m = MutexOptions::new().namespace(&t.ns).create("m").unwrap();
    let mut holder = t.talk("async-mutex-holder", &["m"]);
    holder.stdout_line("LOCKED");
    // Longer than the owner check and the unverified grace together.
    let e = m
        .lock_timeout(Duration::from_millis(600))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let mut probe = t.start("mutex-try", &["m"]);
    assert_eq!(probe.stdout_line("TRY"), "TRY none");
    holder.child().kill().unwrap();
    let lock = m.lock_timeout(DEADLINE).unwrap();
    assert!(lock.is_abandoned(), "expected abandoned");
}

#[test]
fn blocking_try_lock_sees_a_held_then_a_dead_owner() {
    let t = TestNs::new().remove_shm_on_drop(&["m"]);
    let m = MutexOptions::new().namespace(&t.ns).create("m").unwrap();
    let mut holder = t.talk("mutex-holder", &["m"]);
    assert_eq!(holder.stdout_line("LOCKED"), "LOCKED clean");
    assert!(m.try_lock().unwrap().is_none());
    holder.kill();
    let l = m.try_lock().unwrap().expect("a dead owner's lock is taken");
    assert!(l.is_abandoned());
    drop(l);
    assert!(!m.try_lock().unwrap().expect("free").is_abandoned());
}

// ------------------------------------------------------------ semaphore

#[test]
fn async_acquire_gets_a_unit_released_by_another_process() {
    let t = TestNs::new().remove_shm_on_drop(&["s"]);
    let s = Semaphore::new(
        SemaphoreOptions::new()
            .namespace(&t.ns)
            .max(4)
            .create("s")
            .unwrap(),
    );
    let mut rel = t.talk("sem-releaser", &["s"]);
    rel.stdout_line("READY");
    assert!(!s.try_acquire());
    runtime().block_on(async {
        let mut fut = Box::pin(s.acquire());
        started(&mut fut).await;
        rel.tell("release 1");
        rel.stdout_line("RELEASED");
        bounded("acquire after a release", fut).await.unwrap();
    });
    assert_eq!(s.count(), 0);
}

#[test]
fn dropped_pending_acquire_loses_no_unit() {
    let t = TestNs::new().remove_shm_on_drop(&["s"]);
    let s = Semaphore::new(
        SemaphoreOptions::new()
            .namespace(&t.ns)
            .max(4)
            .create("s")
            .unwrap(),
    );
    let mut rel = t.talk("sem-releaser", &["s"]);
    rel.stdout_line("READY");
    runtime().block_on(async {
        for _ in 0..3 {
            pending_then_dropped(s.acquire()).await;
        }
    });
    // Released while the cancelled helpers may still wait: whichever of
    // them takes the unit gives it back.
    rel.tell("release 1");
    rel.stdout_line("RELEASED");
    let mut taker = t.start("sem-acquire-once", &["s"]);
    taker.stdout_line("ACQUIRED");
    taker.wait_success(DEADLINE);
    assert_eq!(s.count(), 0, "exactly one unit existed and was taken");
}

#[test]
fn dropped_acquire_future_that_won_a_unit_releases_it() {
    let t = TestNs::new().remove_shm_on_drop(&["s"]);
    let s = Semaphore::new(
        SemaphoreOptions::new()
            .namespace(&t.ns)
            .max(4)
            .create("s")
            .unwrap(),
    );
    let mut rel = t.talk("sem-releaser", &["s"]);
    rel.stdout_line("READY");
    let rt = runtime();
    let mut fut = Box::pin(s.acquire());
    rt.block_on(started(&mut fut));
    rel.tell("release 1");
    rel.stdout_line("RELEASED");
    // The helper takes the unit for the (unpolled) future...
    wait_until(DEADLINE, "the helper took the unit", || s.count() == 0);
    // ...and gives it back once the future is dropped.
    drop(fut);
    let mut taker = t.start("sem-acquire-once", &["s"]);
    taker.stdout_line("ACQUIRED");
    taker.wait_success(DEADLINE);
    assert_eq!(s.count(), 0);
}

// ---------------------------------------------------------------- event

#[test]
fn async_wait_is_woken_by_a_set_in_another_process_and_takes_the_signal() {
    let t = TestNs::new().remove_shm_on_drop(&["e"]);
    let e = Event::new(EventOptions::new().namespace(&t.ns).create("e").unwrap());
    let mut setter = t.talk("event-setter", &["e"]);
    setter.stdout_line("READY");
    assert!(!e.try_wait());
    runtime().block_on(async {
        let mut fut = Box::pin(e.wait());
        started(&mut fut).await;
        setter.tell("set");
        setter.stdout_line("SET");
        bounded("an event set by the child", fut).await.unwrap();
    });
    assert!(!e.is_set(), "auto reset: the waiter took the one signal");
}

#[test]
fn dropped_pending_event_wait_loses_no_signal() {
    let t = TestNs::new().remove_shm_on_drop(&["e"]);
    let e = Event::new(EventOptions::new().namespace(&t.ns).create("e").unwrap());
    let mut setter = t.talk("event-setter", &["e"]);
    setter.stdout_line("READY");
    runtime().block_on(async {
        for _ in 0..3 {
            pending_then_dropped(e.wait()).await;
        }
    });
    setter.tell("set");
    setter.stdout_line("SET");
    let mut waiter = t.start("event-wait-once", &["e"]);
    waiter.stdout_line("WOKEN");
    waiter.wait_success(DEADLINE);
    assert!(!e.is_set(), "one signal, taken once");
}

#[test]
fn dropped_wait_future_that_won_the_signal_sets_the_event_again() {
    let t = TestNs::new().remove_shm_on_drop(&["e"]);
    let e = Event::new(EventOptions::new().namespace(&t.ns).create("e").unwrap());
    let mut setter = t.talk("event-setter", &["e"]);
    setter.stdout_line("READY");
    let rt = runtime();
    let mut fut = Box::pin(e.wait());
    rt.block_on(started(&mut fut));
    setter.tell("set");
    setter.stdout_line("SET");
    wait_until(DEADLINE, "the helper took the signal", || !e.is_set());
    drop(fut);
    assert!(e.is_set(), "the signal is back");
    let mut waiter = t.start("event-wait-once", &["e"]);
    waiter.stdout_line("WOKEN");
}

#[test]
fn manual_reset_event_wakes_async_and_blocking_waiters_alike() {
    let t = TestNs::new().remove_shm_on_drop(&["e"]);
    let opts = EventOptions::new().namespace(&t.ns).manual_reset(true);
    let e = Event::new(opts.create("e").unwrap());
    let mut setter = t.talk("event-setter", &["e"]);
    setter.stdout_line("READY");
    let mut blocking_waiter = t.start("event-wait-once", &["e"]);
    runtime().block_on(async {
        pending_then_dropped(e.wait()).await;
        let mut fut = Box::pin(e.wait());
        started(&mut fut).await;
        setter.tell("set");
        setter.stdout_line("SET");
        bounded("a manual event set by the child", fut)
            .await
            .unwrap();
        e.wait().await.unwrap(); // manual: stays set
    });
    blocking_waiter.stdout_line("WOKEN");
    assert!(e.is_set());
    let _: &blocking::Event = e.get_ref();
}

#[test]
fn async_types_guards_and_futures_are_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Mutex>();
    send_sync::<Event>();
    send_sync::<Semaphore>();
    send_sync::<ipckit::sync::tokio::MutexGuard<'static>>();
    let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(16).unwrap());
    let m = Mutex::new(blocking::Mutex::at(map.clone(), 0).unwrap());
    let e = Event::new(blocking::Event::at(map.clone(), 8).unwrap());
    send(&m.lock());
    send(&e.wait());
}
