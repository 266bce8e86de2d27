//! A fixed number of slots that threads park boxed values in and take them
//! out of without a lock (the idle shared-memory lanes of a service
//! client: one taken and one put back per call).
//!
//! Each slot is one pointer: null when empty, else a `Box` given up by
//! [`Slots::put`]. Taking swaps the pointer with null, so a value has one
//! owner at a time and no compare-and-swap ever expects a non-null pointer
//! (no ABA). Neither side allocates: the caller keeps the `Box` between
//! uses.
#![allow(unsafe_code)] // raw pointers of boxes moved through atomics

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Up to `N` parked values of type `T`.
pub(crate) struct Slots<T, const N: usize> {
    slots: [AtomicPtr<T>; N],
    /// Owns `T`s (drop check) and is neither `Send` nor `Sync` by itself.
    _owns: PhantomData<*mut T>,
}

// SAFETY: a `Slots` owns the boxes parked in it; moving it to another
// thread moves them, which needs exactly `T: Send`.
unsafe impl<T: Send, const N: usize> Send for Slots<T, N> {}
// SAFETY: through `&Slots` a thread can only move whole values in and out
// (never get a reference to a parked one), as through a `Mutex<T>`, which
// is `Sync` when `T: Send`.
unsafe impl<T: Send, const N: usize> Sync for Slots<T, N> {}

impl<T, const N: usize> Slots<T, N> {
    /// All slots empty.
    pub(crate) fn new() -> Self {
        Slots {
            slots: [const { AtomicPtr::new(ptr::null_mut()) }; N],
            _owns: PhantomData,
        }
    }

    /// A parked value, if any (the lowest slot first).
    pub(crate) fn take(&self) -> Option<Box<T>> {
        for s in &self.slots {
            // A plain load first: an empty slot costs no locked instruction.
            if s.load(Ordering::Relaxed).is_null() {
                continue;
            }
            let p = s.swap(ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: a non-null slot holds a pointer from
                // `Box::into_raw` in `put` (released there, acquired by this
                // swap), and the swap left the slot empty, so this thread is
                // its only owner.
                return Some(unsafe { Box::from_raw(p) });
            }
        }
        None
    }

    /// Park `v` in an empty slot; `Err(v)` when all `N` are full.
    pub(crate) fn put(&self, v: Box<T>) -> Result<(), Box<T>> {
        let p = Box::into_raw(v);
        for s in &self.slots {
            if s.load(Ordering::Relaxed).is_null()
                && s.compare_exchange(ptr::null_mut(), p, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(());
            }
        }
        // SAFETY: `p` came from `Box::into_raw` above and no slot took it.
        Err(unsafe { Box::from_raw(p) })
    }
}

impl<T, const N: usize> Drop for Slots<T, N> {
    fn drop(&mut self) {
        while self.take().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn takes_what_was_put_and_refuses_past_n() {
        let s: Slots<u32, 2> = Slots::new();
        assert!(s.take().is_none());
        s.put(Box::new(1)).unwrap();
        s.put(Box::new(2)).unwrap();
        assert_eq!(s.put(Box::new(3)).map_err(|b| *b), Err(3));
        let mut got = vec![*s.take().unwrap(), *s.take().unwrap()];
        got.sort();
        assert_eq!(got, [1, 2]);
        assert!(s.take().is_none());
    }

    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn drops_parked_values() {
        let n = Arc::new(AtomicUsize::new(0));
        let s: Slots<Counted, 4> = Slots::new();
        for _ in 0..3 {
            assert!(s.put(Box::new(Counted(n.clone()))).is_ok());
        }
        drop(s);
        assert_eq!(n.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn threads_never_share_a_value() {
        // Four values, each with an "in use" flag: a value handed to two
        // threads at once would find its flag already set.
        const VALUES: usize = 4;
        let s = Arc::new(Slots::<(usize, AtomicUsize), VALUES>::new());
        for i in 0..VALUES {
            assert!(s.put(Box::new((i, AtomicUsize::new(0)))).is_ok());
        }
        let uses = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (s, uses) = (s.clone(), uses.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if let Some(v) = s.take() {
                            assert_eq!(v.1.swap(1, Ordering::Relaxed), 0);
                            uses.fetch_add(1, Ordering::Relaxed);
                            v.1.store(0, Ordering::Relaxed);
                            assert!(s.put(v).is_ok());
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(uses.load(Ordering::Relaxed) > 0);
        let mut left: Vec<usize> = std::iter::from_fn(|| s.take().map(|v| v.0)).collect();
        left.sort();
        assert_eq!(left, (0..VALUES).collect::<Vec<_>>());
    }
}
