//! libtorch's own OpenMP threads, borrowed to run a team.
//!
//! Why: after each parallel op libtorch's OpenMP workers keep spinning for a
//! while (libgomp's default spin count: milliseconds), waiting for the next
//! op. A team of our own threads started meanwhile shares the cores with
//! them and runs at half speed; in a training step, where libtorch ops and
//! the fused kernels alternate, that is all the time (measured: a 2-layer
//! RNN forward 3.5 ms alone, 10 ms between libtorch ops). Run as an OpenMP
//! parallel region on the same runtime, the team *is* those workers.
//!
//! The runtime is found among the loaded libraries (libtorch loads its
//! libgomp before this extension); without one the caller falls back to its
//! own threads.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

type Parallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);
type Query = unsafe extern "C" fn() -> c_int;

pub struct Omp {
    parallel: Parallel,
    thread_num: Query,
    num_threads: Query,
}

/// The loaded GNU OpenMP runtime, if any.
pub fn runtime() -> Option<&'static Omp> {
    static OMP: OnceLock<Option<Omp>> = OnceLock::new();
    OMP.get_or_init(find).as_ref()
}

fn find() -> Option<Omp> {
    loaded_libraries()
        .into_iter()
        .filter(|path| {
            let name = path.rsplit('/').next().unwrap_or(path);
            name.starts_with("libgomp")
        })
        .find_map(|path| {
            let c = std::ffi::CString::new(path).ok()?;
            // SAFETY: RTLD_NOLOAD only returns a handle to a library already
            // loaded (it loads nothing, runs no constructors); the symbols
            // have the C signatures of libgomp's documented ABI.
            unsafe {
                let handle = libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
                if handle.is_null() {
                    return None;
                }
                let sym = |name: &CStr| libc::dlsym(handle, name.as_ptr());
                let (p, t, n) = (
                    sym(c"GOMP_parallel"),
                    sym(c"omp_get_thread_num"),
                    sym(c"omp_get_num_threads"),
                );
                if p.is_null() || t.is_null() || n.is_null() {
                    return None;
                }
                Some(Omp {
                    parallel: std::mem::transmute::<*mut c_void, Parallel>(p),
                    thread_num: std::mem::transmute::<*mut c_void, Query>(t),
                    num_threads: std::mem::transmute::<*mut c_void, Query>(n),
                })
            }
        })
}

fn loaded_libraries() -> Vec<String> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        let names = &mut *(data as *mut Vec<String>);
        let name: *const c_char = (*info).dlpi_name;
        if !name.is_null() {
            names.push(CStr::from_ptr(name).to_string_lossy().into_owned());
        }
        0
    }
    let mut names: Vec<String> = Vec::new();
    // SAFETY: the callback only reads the entry it is given.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut names as *mut _ as *mut c_void) };
    names
}

struct Region<'a, F> {
    omp: &'a Omp,
    threads: usize,
    body: &'a F,
    /// Set when the runtime gave the region another number of threads.
    refused: std::sync::atomic::AtomicBool,
}

extern "C" fn enter<F: Fn(usize) + Sync>(data: *mut c_void) {
    // SAFETY: `data` is the `Region` that `run` keeps alive across the call.
    let region = unsafe { &*(data as *const Region<F>) };
    let (tid, n) = unsafe { ((region.omp.thread_num)(), (region.omp.num_threads)()) };
    if n as usize != region.threads {
        // Every thread of the region sees the same count and leaves at once,
        // before any of them waits at a barrier.
        region
            .refused
            .store(true, std::sync::atomic::Ordering::Relaxed);
        return;
    }
    (region.body)(tid as usize);
}

impl Omp {
    /// Runs `body(tid)` for `tid` in `0..threads`, each on its own thread of
    /// the runtime (the caller's thread is 0). Returns false, having run
    /// nothing, when the runtime will not give that many threads (nested in
    /// another region, or limited).
    ///
    /// `body` must not unwind: a panic inside the region aborts the process
    /// (`team::run` hands it only members that catch their panics).
    pub fn run<F: Fn(usize) + Sync>(&self, threads: usize, body: &F) -> bool {
        let region = Region {
            omp: self,
            threads,
            body,
            refused: false.into(),
        };
        // SAFETY: `enter::<F>` matches the data pointer's type; GOMP_parallel
        // returns after every thread has left `enter`.
        unsafe {
            (self.parallel)(
                enter::<F>,
                &region as *const Region<F> as *mut c_void,
                threads as c_uint,
                0,
            )
        };
        !region.refused.into_inner()
    }
}

#[cfg(test)]
mod tests {
    /// libtorch's x86-64 Linux builds bring GNU OpenMP; the team must find it
    /// there, or every team would fall back to competing threads.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn finds_libtorchs_runtime() {
        let _torch = tch::Tensor::zeros([1], tch::kind::FLOAT_CPU);
        assert!(super::runtime().is_some());
    }
}
