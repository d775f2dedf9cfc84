//! Intra-op threading: one process-wide thread count and pool, used by every kernel.
//!
//! Kernels split work into a few large independent items (blocks of a GEMM, channels of a
//! depthwise convolution, rows of a reduction) and run them with [`parallel_for`]; nothing
//! allocates per element.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

static THREADS: AtomicUsize = AtomicUsize::new(0);
static POOL: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// Sets the number of intra-op threads (0 restores the default: the available parallelism).
/// Takes effect for kernels started afterwards.
pub fn set_num_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}

/// The number of intra-op threads kernels use.
pub fn num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => default_threads(),
        n => n,
    }
}

/// The default thread count, read once: `QAIC_NUM_THREADS` when set to a positive number,
/// else the available parallelism (`available_parallelism` reads cgroup files on every call,
/// several system calls, far too slow for a per-kernel query).
fn default_threads() -> usize {
    static DEFAULT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::env::var("QAIC_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    })
}

fn pool(n: usize) -> Option<Arc<rayon::ThreadPool>> {
    let mut g = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, p)) = g.as_ref()
        && *k == n
    {
        return Some(p.clone());
    }
    match rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("qaic-kernels-{i}")).build() {
        Ok(p) => {
            let p = Arc::new(p);
            *g = Some((n, p.clone()));
            Some(p)
        }
        Err(e) => {
            tracing::warn!("cannot start {n} kernel threads ({e}); running on one thread");
            None
        }
    }
}

/// Runs `f(i)` for every `i` in `0..n`, on up to [`num_threads`] threads. Items must be
/// independent. Runs inline when there is one item or one thread.
pub fn parallel_for(n: usize, f: impl Fn(usize) + Sync + Send) {
    let t = num_threads();
    if n <= 1 || t <= 1 {
        (0..n).for_each(f);
        return;
    }
    if rayon::current_thread_index().is_some() && in_our_pool() {
        // Already on a kernel thread (inside `run_in_pool` or a nested region): split
        // directly, work stealing balances nested regions.
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
        return;
    }
    match pool(t) {
        Some(p) => p.install(|| {
            use rayon::prelude::*;
            (0..n).into_par_iter().for_each(f)
        }),
        None => (0..n).for_each(f),
    }
}

/// Runs `f` on a kernel thread. Every kernel `f` calls then splits its work with a cheap
/// in-pool fork instead of handing it over from an outside thread and sleeping until it is
/// done (several microseconds per kernel, which adds up over the hundreds of kernels of one
/// inference). Runs `f` directly with one thread or when already on a kernel thread.
pub fn run_in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let t = num_threads();
    if t <= 1 || in_our_pool() {
        return f();
    }
    match pool(t) {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// Whether the calling thread is one of the kernel threads.
fn in_our_pool() -> bool {
    std::thread::current().name().is_some_and(|n| n.starts_with("qaic-kernels-"))
}

/// A raw pointer that may cross threads; users guarantee items write disjoint ranges.
pub struct SendPtr<T>(pub *mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    #[inline(always)]
    pub fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    #[test]
    fn parallel_for_visits_every_item_once() {
        let sum = AtomicU64::new(0);
        parallel_for(1000, |i| {
            sum.fetch_add(i as u64, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 999 * 1000 / 2);
    }
}
