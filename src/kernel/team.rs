//! A few threads that work through the same token loop in lock step: a spin
//! barrier between phases and buffers each phase writes in disjoint parts.
//!
//! A token of generation takes tens of microseconds, so waking sleeping
//! threads (a condition variable, a thread pool's queue) would cost as much as
//! the work; the threads spin instead, and yield only after a long wait (an
//! oversubscribed machine).
//!
//! A panic in one member (a bug: every index is validated before a team
//! starts) must neither abort the process (the members of an OpenMP region
//! run in a C frame that cannot unwind) nor leave the others spinning at the
//! barrier: [`run`] catches it at the member's edge and poisons the barrier,
//! whose waiters then unwind too, and returns an error.

use std::any::Any;
use std::collections::TryReserveError;
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Spins before each `yield_now` once a wait has gone on this long.
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

pub struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    /// Set when a member of the team panicked: it will never arrive.
    poisoned: AtomicBool,
}

/// The payload a member unwinds with when its barrier is poisoned (raised
/// with `resume_unwind`, so no panic message is printed for it).
struct Poisoned;

impl SpinBarrier {
    pub fn new(threads: usize) -> Self {
        SpinBarrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Returns once all `threads` have called `wait` for this round. Writes a
    /// thread made before its call are visible to every thread after it.
    ///
    /// Once the barrier is poisoned (a member panicked, see [`run`]) a waiter
    /// unwinds instead of waiting for a member that will never come.
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
            if self.poisoned.load(Ordering::Acquire) {
                resume_unwind(Box::new(Poisoned));
            }
            if spins < SPINS_BEFORE_YIELD {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A buffer the team shares: its own memory, or memory it borrows (a
/// tensor's, so results land where the caller wants them). Between two
/// barriers each element is written by at most one thread and then read by
/// none, or only read; the callers of the `unsafe` accessors keep to that.
pub struct SharedBuf<T = f32> {
    ptr: *mut T,
    len: usize,
    /// The storage of an owned buffer (empty when borrowed); its heap block,
    /// which `ptr` points into, does not move with the struct.
    _owned: Vec<T>,
}

// SAFETY: access is coordinated by the discipline above and the barriers'
// acquire/release ordering.
unsafe impl<T: Send> Sync for SharedBuf<T> {}
unsafe impl<T: Send> Send for SharedBuf<T> {}

impl<T: Copy + Default> SharedBuf<T> {
    pub fn new(len: usize) -> Self {
        let mut owned = vec![T::default(); len];
        SharedBuf {
            ptr: owned.as_mut_ptr(),
            len,
            _owned: owned,
        }
    }

    /// [`SharedBuf::new`], or an error (RuntimeError) when the memory cannot
    /// be had, for sizes that come from user input.
    pub fn try_new(len: usize) -> Result<Self> {
        let mut owned = try_vec(T::default(), len)?;
        Ok(SharedBuf {
            ptr: owned.as_mut_ptr(),
            len,
            _owned: owned,
        })
    }

    /// A buffer over `len` elements at `ptr`.
    ///
    /// # Safety
    /// `ptr` points to `len` initialised elements that stay valid while the
    /// buffer is used, and nothing outside the team touches them meanwhile.
    pub unsafe fn borrowed(ptr: *mut T, len: usize) -> Self {
        SharedBuf {
            ptr,
            len,
            _owned: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, range: &Range<usize>) {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "range {range:?} outside a buffer of {}",
            self.len
        );
    }

    /// A buffer over `range` of this one, under the same discipline.
    ///
    /// # Safety
    /// The window is used only while this buffer's memory is valid.
    pub unsafe fn window(&self, range: Range<usize>) -> SharedBuf<T> {
        self.check(&range);
        SharedBuf::borrowed(self.ptr.add(range.start), range.len())
    }

    /// # Safety
    /// No thread may write `range` until the next barrier.
    pub unsafe fn get(&self, range: Range<usize>) -> &[T] {
        self.check(&range);
        std::slice::from_raw_parts(self.ptr.add(range.start), range.len())
    }

    /// # Safety
    /// No other thread may read or write `range` until the next barrier.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut(&self, range: Range<usize>) -> &mut [T] {
        self.check(&range);
        std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len())
    }
}

/// `len` copies of `value`, or an error (RuntimeError, as libtorch's
/// allocator raises) instead of aborting when the memory cannot be had.
pub fn try_vec<T: Clone>(value: T, len: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|e| no_memory::<T>(len, e))?;
    v.resize(len, value);
    Ok(v)
}

/// The error for `len` elements of `T` that could not be allocated.
pub fn no_memory<T>(len: usize, err: TryReserveError) -> Error {
    let bytes = len.saturating_mul(std::mem::size_of::<T>());
    Error::shape(format!(
        "cannot allocate memory for {len} elements ({bytes} bytes): {err}"
    ))
}

/// libtorch's intra-op thread setting (`torch.set_num_threads`), at least 1:
/// the threads our own parallel loops may use, as libtorch's own ops do.
pub fn available() -> usize {
    tch::get_num_threads().max(1) as usize
}

/// Most threads a team uses: past this the barriers cost more than they save.
const MAX_THREADS: usize = 8;

/// How many threads a team should have: no more than `available` (libtorch's
/// intra-op setting), `MAX_THREADS` or `parts` (the pieces the work splits
/// into), and few enough that each gets `min_work` of the step's `work`.
pub fn size(available: usize, parts: usize, work: usize, min_work: usize) -> usize {
    available
        .min(MAX_THREADS)
        .min(parts)
        .min(work / min_work.max(1))
        .max(1)
}

/// Runs `body(tid)` for `tid` in `0..threads` at once: on libtorch's OpenMP
/// threads when the runtime can be borrowed (see `omp`), else on threads of
/// our own. Member 0 always runs on the caller's thread (an OpenMP region's
/// master is the thread that starts it). Returns when all are done.
///
/// `barrier` is the one the members meet at (made for `threads`). Should a
/// member panic, the panic stops at the member's edge, the barrier is
/// poisoned so that the others leave it, and `run` returns an error naming
/// the panic (RuntimeError): the team's buffers then hold no useful result.
pub fn run<F: Fn(usize) + Sync>(threads: usize, barrier: &SpinBarrier, body: F) -> Result<()> {
    let threads = threads.max(1);
    if barrier.threads != threads && threads > 1 {
        return Err(Error::shape(format!(
            "internal: a team of {threads} threads was given a barrier for {}",
            barrier.threads
        )));
    }
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let fail = |message: String| {
        barrier.poisoned.store(true, Ordering::Release);
        failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(message);
    };
    let member = |tid: usize| {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| body(tid))) {
            barrier.poisoned.store(true, Ordering::Release);
            if !payload.is::<Poisoned>() {
                fail(panic_message(payload.as_ref()));
            }
            // A payload whose destructor panics must not escape either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
        }
    };
    let ran_on_omp =
        threads > 1 && super::omp::runtime().is_some_and(|omp| omp.run(threads, &member));
    if threads == 1 {
        member(0);
    } else if !ran_on_omp {
        std::thread::scope(|scope| {
            for tid in 1..threads {
                let member = &member;
                let started = std::thread::Builder::new().spawn_scoped(scope, move || member(tid));
                if let Err(e) = started {
                    // The others would wait for it forever: poison and leave.
                    fail(format!("could not start a thread: {e}"));
                    break;
                }
            }
            member(0);
        });
    }
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        None => Ok(()),
        Some(message) => Err(Error::shape(format!(
            "internal error in a CPU kernel, the computation was abandoned: {message}"
        ))),
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a thread panicked".to_string()
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

    /// Every tid runs once, all at the same time (they meet at a barrier),
    /// on the OpenMP runtime and, nested inside it, on threads of our own.
    #[test]
    fn run_starts_each_member_once_and_together() {
        let _torch = tch::Tensor::zeros([1], tch::kind::FLOAT_CPU); // loads libtorch's runtime
        let check = |threads: usize| {
            let seen: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
            let barrier = SpinBarrier::new(threads);
            run(threads, &barrier, |tid| {
                seen[tid].fetch_add(1, Ordering::Relaxed);
                barrier.wait();
            })
            .unwrap();
            assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
        };
        check(1);
        check(3);
        run(2, &SpinBarrier::new(2), |_| check(2)).unwrap();
    }

    /// A member that panics makes `run` return an error: the others, waiting
    /// at the barrier for it, leave (no hang), and nothing unwinds out of the
    /// OpenMP region (no abort); the same on threads of our own (nested).
    #[test]
    fn a_panicking_member_poisons_the_team() {
        let _torch = tch::Tensor::zeros([1], tch::kind::FLOAT_CPU);
        let check = |threads: usize, bad: usize| {
            let barrier = SpinBarrier::new(threads);
            let err = run(threads, &barrier, |tid| {
                for round in 0..100 {
                    if tid == bad && round == 3 {
                        panic!("member {tid} fails");
                    }
                    barrier.wait();
                }
            })
            .unwrap_err();
            assert!(
                err.to_string().contains(&format!("member {bad} fails")),
                "{err}"
            );
        };
        check(1, 0);
        check(3, 0);
        check(3, 2);
        run(2, &SpinBarrier::new(2), |_| check(2, 1)).unwrap();
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
