//! The thread pool for batch work, rebuilt after `fork`.
//!
//! rayon's global pool lives in worker threads that a forked child does not
//! have; using it there blocks forever (MindSpore dataset workers fork after
//! the parent has tokenized). Here each process id gets its own pool: the
//! child sees a different pid and builds a fresh one. No lock is taken, so a
//! fork while another thread is inside the pool cannot leave a held lock.
//! The parent's pool is leaked in the child (its threads do not exist there).

use rayon::ThreadPool;
use std::sync::atomic::{AtomicPtr, Ordering};

struct PidPool {
    pid: u32,
    pool: ThreadPool,
}

static CURRENT: AtomicPtr<PidPool> = AtomicPtr::new(std::ptr::null_mut());

/// This process's pool (RAYON_NUM_THREADS caps its size, as for rayon's own).
pub fn pool() -> &'static ThreadPool {
    let pid = std::process::id();
    let cur = CURRENT.load(Ordering::Acquire);
    // SAFETY: pointers stored in CURRENT come from Box::leak and are never freed.
    if let Some(p) = unsafe { cur.as_ref() } {
        if p.pid == pid {
            return &p.pool;
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("mft-bpe-{i}"))
        .build()
        .or_else(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
        .expect("a one-thread pool can always be built");
    let fresh: &'static mut PidPool = Box::leak(Box::new(PidPool { pid, pool }));
    match CURRENT.compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => &fresh.pool,
        // Another thread installed one first: use it (ours leaks, once).
        Err(other) => match unsafe { other.as_ref() } {
            Some(p) if p.pid == pid => &p.pool,
            _ => &fresh.pool,
        },
    }
}

/// The last pool built for an explicit size (jobs that ask for a thread
/// count, e.g. `--workers`): kept, so its threads' word caches stay warm
/// across calls; a different size replaces it (the old one is leaked).
static SIZED: AtomicPtr<PidPool> = AtomicPtr::new(std::ptr::null_mut());

/// A pool of `threads` threads: this process's shared pool when it has that
/// many (or `threads` is 0), else a pool of exactly that size.
pub fn pool_of(threads: usize) -> &'static ThreadPool {
    let shared = pool();
    if threads == 0 || threads == shared.current_num_threads() {
        return shared;
    }
    let pid = std::process::id();
    let cur = SIZED.load(Ordering::Acquire);
    // SAFETY: pointers stored in SIZED come from Box::leak and are never freed.
    if let Some(p) = unsafe { cur.as_ref() } {
        if p.pid == pid && p.pool.current_num_threads() == threads {
            return &p.pool;
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("mft-sized-{i}"))
        .build()
        .or_else(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
        .expect("a one-thread pool can always be built");
    let fresh: &'static mut PidPool = Box::leak(Box::new(PidPool { pid, pool }));
    SIZED.store(fresh, Ordering::Release);
    &fresh.pool
}
