//! The large-chunk path: when to hit the cache, grow with `mremap`, or map fresh memory.
//!
//! Why it is separate from `lib.rs`: the exported functions only decide *which* path a
//! request takes (glibc for small, this module for large) and keep glibc's argument
//! semantics; everything that depends on the cache, the chunk layout and the lazily
//! loaded configuration lives here. The order of attempts follows what page faults cost:
//! 1. a cached mapping of 1–2x the needed length (all pages already faulted in);
//! 2. a cached mapping of 0.5–1x, grown with `mremap` (only the new tail faults);
//! 3. a fresh `mmap` (every touched page faults).

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use crate::cache::{Cache, SLOTS};
use crate::chunk::{self, HDR, Header, IS_MMAPPED, OWN, PAGE};
use crate::config::{self, DEFAULT_BUDGET_CAP, DEFAULT_MAX_MAPPINGS, DEFAULT_THRESHOLD};
use crate::real;
use crate::stats::{self, Stats};

/// The cache of freed large mappings.
pub static CACHE: Cache = Cache::new(DEFAULT_BUDGET_CAP, DEFAULT_MAX_MAPPINGS, SLOTS);
/// What the cache did.
pub static STATS: Stats = Stats::new();
/// Requests of at least this many bytes take the large path (`usize::MAX` = disabled).
static THRESHOLD: AtomicUsize = AtomicUsize::new(DEFAULT_THRESHOLD);
static PRINT_STATS: AtomicBool = AtomicBool::new(false);
/// 0 = not configured, 1 = being configured by some thread, 2 = configured.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Current large threshold.
#[inline(always)]
pub fn threshold() -> usize {
    THRESHOLD.load(Ordering::Relaxed)
}

/// Loads the configuration once. Re-entrant and lock-free: a thread that finds another
/// one configuring simply goes on with the defaults (there is nothing to wait for that
/// could not also be interrupted by a signal or a `fork`).
pub fn ensure_init() {
    if STATE.load(Ordering::Acquire) == 2 {
        return;
    }
    if STATE.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    let cfg = config::load();
    // SAFETY: getauxval only reads the auxiliary vector.
    let page = unsafe { libc::getauxval(libc::AT_PAGESZ) } as usize;
    if cfg.disabled || page != PAGE {
        THRESHOLD.store(usize::MAX, Ordering::Relaxed);
        CACHE.set_limits(0, 0, 0);
    } else {
        CACHE.set_limits(cfg.budget, cfg.max_mappings, cfg.class_slots);
        THRESHOLD.store(cfg.threshold, Ordering::Relaxed);
    }
    PRINT_STATS.store(cfg.stats, Ordering::Relaxed);
    STATE.store(2, Ordering::Release);
}

/// Unmaps a mapping and counts it as released.
fn release(base: usize, len: usize) {
    // SAFETY: only called with mappings this module owns exclusively (claimed from the
    // cache or refused by it).
    unsafe { real::unmap(base, len) };
    STATS.bytes_released.add(len as u64);
}

/// Returns a mapping to the cache, or to the kernel if the cache refuses it.
fn recycle(base: usize, len: usize) {
    if CACHE.put(base, len, &mut release) {
        STATS.cached_frees.add(1);
    } else {
        release(base, len);
    }
}

/// Allocates a large chunk of `n` user bytes aligned to `align` (16, or a power of two
/// above 16); the first `n` bytes are zero if `zero`. Null with `errno = ENOMEM` on failure.
pub fn alloc(n: usize, align: usize, zero: bool) -> *mut u8 {
    ensure_init();
    let need = if align <= HDR { chunk::mapping_len_for(n) } else { chunk::aligned_mapping_len_for(n, align) };
    let Some(need) = need.filter(|&l| l <= isize::MAX as usize) else {
        real::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    // 1. Best fit among cached mappings of 1x..2x.
    if let Some((base, len)) = CACHE.take(need, need.saturating_mul(2), false) {
        STATS.hits.add(1);
        STATS.bytes_reused.add(need as u64); // the part the request can touch
        // SAFETY: the cache handed us exclusive ownership of [base, base + len), len >= need.
        let user = unsafe { chunk::install(base, len, align) };
        if zero {
            // SAFETY: user + n <= base + len by the sizing above.
            unsafe { core::ptr::write_bytes(user, 0, n) };
        }
        return user;
    }
    // 2. Grow the largest cached mapping of 0.5x..1x: its pages stay faulted in.
    let half = (need / 2 + PAGE - 1) & !(PAGE - 1);
    if need > PAGE
        && let Some((base, len)) = CACHE.take(half.max(PAGE), need - PAGE, true)
    {
        // SAFETY: we own [base, base + len) exclusively.
        match unsafe { real::remap(base, len, need) } {
            Some(nb) => {
                STATS.hits.add(1);
                STATS.bytes_reused.add(len as u64);
                // SAFETY: [nb, nb + need) is now our mapping.
                let user = unsafe { chunk::install(nb, need, align) };
                if zero {
                    // Only the old part can hold stale data; the grown tail is fresh and zero.
                    let end = (user as usize).saturating_add(n).min(nb + len);
                    if end > user as usize {
                        // SAFETY: [user, end) lies inside the mapping.
                        unsafe { core::ptr::write_bytes(user, 0, end - user as usize) };
                    }
                }
                return user;
            }
            None => recycle(base, len),
        }
    }
    // 3. Fresh pages.
    STATS.misses.add(1);
    if let Some(base) = real::map(need) {
        // SAFETY: fresh mapping of `need` bytes, ours alone; mmap memory is already zero.
        return unsafe { chunk::install(base, need, align) };
    }
    // Out of memory or of mappings (vm.max_map_count): give the cache back and retry.
    if trim() != 0
        && let Some(base) = real::map(need)
    {
        // SAFETY: as above.
        return unsafe { chunk::install(base, need, align) };
    }
    // Last resort, like glibc past `mmap_max`: its heap. Its chunk is freed by glibc.
    // SAFETY: plain glibc allocations; they set errno on failure.
    unsafe {
        if zero {
            real::libc_calloc(1, n).cast()
        } else if align > HDR {
            real::libc_memalign(align, n).cast()
        } else {
            real::libc_malloc(n).cast()
        }
    }
}

/// Frees a chunk whose header says it is mmapped and ours.
///
/// # Safety
/// `user` must be a live pointer from this library whose header is `h`.
#[inline(never)] // keeps the small-chunk `free` fast path free of this frame's prologue
pub unsafe fn free(user: *mut u8, h: Header) {
    match h.mapping(user as usize) {
        Some((base, len)) => {
            let saved = real::errno();
            recycle(base, len);
            real::set_errno(saved);
        }
        // A header glibc itself would reject: let glibc report it the way it always does.
        // SAFETY: forwarding the caller's pointer unchanged.
        None => unsafe { real::libc_free(user.cast()) },
    }
}

/// Resizes one of our chunks to `n > 0` bytes (glibc semantics: on failure null,
/// `errno = ENOMEM`, the old chunk intact).
///
/// # Safety
/// `user` must be a live pointer from this library whose header is `h`.
pub unsafe fn realloc(user: *mut u8, h: Header, n: usize) -> *mut u8 {
    let Some((base, len)) = h.mapping(user as usize) else {
        // SAFETY: glibc diagnoses the bad pointer exactly as without the preload.
        return unsafe { real::libc_realloc(user.cast(), n) }.cast();
    };
    let usable = h.usable();
    if n < threshold() {
        // Shrinking below the threshold: move to glibc's heap, then cache our mapping.
        // SAFETY: plain glibc allocation.
        let np = unsafe { real::libc_malloc(n) } as *mut u8;
        if !np.is_null() {
            // SAFETY: both blocks hold at least min(usable, n) bytes and are distinct.
            unsafe { core::ptr::copy_nonoverlapping(user, np, n.min(usable)) };
            // SAFETY: `user` is ours and no longer used.
            unsafe { free(user, h) };
        }
        return np;
    }
    let off = user as usize - base; // lead bytes, header included
    let Some(need) = off.checked_add(n).and_then(chunk::page_round_up).filter(|&l| l <= isize::MAX as usize) else {
        real::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    if need <= len && need.saturating_mul(2) >= len {
        return user; // fits, and at most half of the mapping would be slack
    }
    // SAFETY: we own the mapping; on success the old range is gone and we rewrite the header.
    match unsafe { real::remap(base, len, need) } {
        Some(nb) => {
            if need < len {
                STATS.bytes_released.add((len - need) as u64);
            }
            let chunk = nb + off - HDR;
            // SAFETY: `chunk` is the same offset inside the moved mapping; its header words
            // moved with it, only the size changes.
            unsafe {
                (chunk as *mut usize).add(1).write((need - (off - HDR)) | IS_MMAPPED | OWN);
            }
            (nb + off) as *mut u8
        }
        None => {
            // mremap can fail when shrinking is impossible for the kernel; shrinking in
            // place is always valid, so keep the chunk as it is in that case.
            if need <= len {
                return user;
            }
            core::ptr::null_mut()
        }
    }
}

/// Empties the cache; returns the number of bytes released.
pub fn trim() -> usize {
    CACHE.drain(&mut release)
}

/// Fills `out` with the counters; see `turingwatch_preload_stats` in `lib.rs`.
pub fn snapshot(out: &mut [u64]) -> usize {
    let vals = [
        STATS.hits.get(),
        STATS.misses.get(),
        STATS.bytes_reused.get(),
        STATS.bytes_released.get(),
        CACHE.cached_bytes() as u64,
        CACHE.cached_entries() as u64,
        CACHE.budget() as u64,
        threshold() as u64,
        STATS.cached_frees.get(),
    ];
    let n = out.len().min(vals.len());
    out[..n].copy_from_slice(&vals[..n]);
    vals.len()
}

/// Prints the exit report if `TURINGWATCH_PRELOAD_STATS` asked for it.
pub fn report_at_exit() {
    // Silent in processes that never took the large path (shell helpers in a job script).
    if !PRINT_STATS.load(Ordering::Relaxed) || STATS.hits.get() + STATS.misses.get() == 0 {
        return;
    }
    let mut line = stats::Line::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    stats::render(&mut line, pid, &STATS, CACHE.cached_bytes() as u64, CACHE.budget() as u64, PAGE as u64);
    config::stderr(&[line.as_bytes()]);
}
