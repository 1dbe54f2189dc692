//! Long work without the GIL: Rust loops run inside `py.allow_threads` and
//! poll `interrupt_poller` to notice Ctrl-C, re-taking the GIL only briefly.

use pyo3::Python;

/// A closure for the core's `interrupted()` hooks: every `every` calls it
/// re-takes the GIL and asks Python whether a signal (Ctrl-C) is pending.
/// The pending KeyboardInterrupt is consumed here; the core answers with
/// `Error::Interrupted`, which becomes a fresh KeyboardInterrupt.
pub fn interrupt_poller(every: u32) -> impl FnMut() -> bool {
    let mut calls = 0u32;
    move || {
        calls = calls.wrapping_add(1);
        if !calls.is_multiple_of(every.max(1)) {
            return false;
        }
        Python::with_gil(|py| py.check_signals().is_err())
    }
}
