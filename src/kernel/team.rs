//! A few threads that work through the same token loop in lock step: a spin
//! barrier between phases and buffers each phase writes in disjoint parts.
//!
//! A token of generation takes tens of microseconds, so waking sleeping
//! threads (a condition variable, a thread pool's queue) would cost as much as
//! the work; the threads spin instead, and yield only after a long wait (an
//! oversubscribed machine).

use std::cell::UnsafeCell;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Spins before each `yield_now` once a wait has gone on this long.
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

pub struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    pub fn new(threads: usize) -> Self {
        SpinBarrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Returns once all `threads` have called `wait` for this round. Writes a
    /// thread made before its call are visible to every thread after it.
    pub fn wait(&self) {
        if self.threads == 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if spins < SPINS_BEFORE_YIELD {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A buffer the team shares. Between two barriers each element is
/// written by at most one thread and then read by none, or only read; the
/// callers of the `unsafe` accessors keep to that.
pub struct SharedBuf<T = f32> {
    data: UnsafeCell<Vec<T>>,
}

// SAFETY: access is coordinated by the discipline above and the barriers'
// acquire/release ordering.
unsafe impl<T: Send> Sync for SharedBuf<T> {}

impl<T: Copy + Default> SharedBuf<T> {
    pub fn new(len: usize) -> Self {
        SharedBuf {
            data: UnsafeCell::new(vec![T::default(); len]),
        }
    }

    pub fn len(&self) -> usize {
        // SAFETY: the length never changes after construction.
        unsafe { (*self.data.get()).len() }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// # Safety
    /// No thread may write `range` until the next barrier.
    pub unsafe fn get(&self, range: Range<usize>) -> &[T] {
        &(&*self.data.get())[range]
    }

    /// # Safety
    /// No other thread may read or write `range` until the next barrier.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut(&self, range: Range<usize>) -> &mut [T] {
        &mut (&mut *self.data.get())[range]
    }
}

/// The `part`-th of `parts` nearly equal consecutive pieces of `0..len`.
pub fn split(len: usize, parts: usize, part: usize) -> Range<usize> {
    len * part / parts..len * (part + 1) / parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything_once() {
        for len in 0..20 {
            for parts in 1..5 {
                let pieces: Vec<_> = (0..parts).flat_map(|p| split(len, parts, p)).collect();
                assert_eq!(pieces, (0..len).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn barrier_orders_phases() {
        // Each round every thread writes its slot, then checks all slots.
        let threads = 3;
        let barrier = SpinBarrier::new(threads);
        let buf = SharedBuf::<f32>::new(threads);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (barrier, buf) = (&barrier, &buf);
                s.spawn(move || {
                    for round in 0..2000 {
                        unsafe { buf.get_mut(t..t + 1)[0] = round as f32 };
                        barrier.wait();
                        let all = unsafe { buf.get(0..threads) };
                        assert!(all.iter().all(|&v| v == round as f32));
                        barrier.wait();
                    }
                });
            }
        });
    }
}
