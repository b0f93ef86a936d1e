//! The large-chunk path: when to hit the cache, grow with `mremap`, or map fresh memory.
//!
//! Why it is separate from `lib.rs`: the exported functions only decide *which* path a
//! request takes (glibc for small, this module for large) and keep glibc's argument
//! semantics; everything that depends on the cache, the chunk layout and the lazily
//! loaded configuration lives here. The order of attempts follows what page faults cost
//! (see [`reuse`]):
//! 1. the smallest cached mapping of at least the needed length, split: the request gets
//!    its head, a tail worth keeping goes back to the cache (all pages already faulted in);
//! 2. the largest smaller cached mapping, grown with `mremap` (only the new tail faults);
//! 3. a fresh `mmap` (every touched page faults).
//!
//! Each step looks first in the calling thread's stash (the cache's first level: what
//! this thread freed and split off last), because those pages are hot in this core's
//! TLB and caches and no other thread writes those cache lines.
//!
//! Freed chunks merge with cached neighbours (in the thread's stash and the shared
//! classes), so split blocks coalesce again, as in a heap.
//!
//! Memory is bounded per job, not per process: every process of a job watches the same
//! cgroup usage counter (`job` below). Below two thirds of the high mark the cache is hot;
//! up to the high mark cached chunks are `MADV_FREE`d (the kernel may reclaim them before
//! it would OOM-kill); above it nothing is cached and the cache is released. The
//! per-process byte budget stays as a second cap.
//!
//! The chunk layout is glibc's, probed once at start-up (`probe_layout`); if it fits no
//! known layout the library passes everything through to glibc.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::cache::{Cache, SLOTS, STASHES};
use crate::chunk::{self, HDR, Header, Layout, PAGE, Probe};
use crate::config::{self, DEFAULT_BUDGET_CAP, DEFAULT_MAX_MAPPINGS, DEFAULT_THRESHOLD, JobCgroup};
use crate::real;
use crate::stats::{self, Stats};

/// The cache of freed large mappings.
pub static CACHE: Cache = Cache::new(DEFAULT_BUDGET_CAP, DEFAULT_MAX_MAPPINGS, SLOTS);
/// What the cache did.
pub static STATS: Stats = Stats::new();
/// Requests of at least this many bytes take the large path (`usize::MAX` = disabled).
static THRESHOLD: AtomicUsize = AtomicUsize::new(DEFAULT_THRESHOLD);
/// 0 = not configured, 1 = being configured by some thread, 2 = configured.
static STATE: AtomicU8 = AtomicU8::new(0);
/// The probed chunk layout (`Layout as u8`), 0 until known (then we make no chunks).
static LAYOUT: AtomicU8 = AtomicU8::new(0);
/// Remainders of a split smaller than this are unmapped rather than cached.
const MIN_PIECE: usize = 16 * PAGE;

/// The chunk layout in use, `None` before the probe (or if it failed).
#[inline]
pub fn layout() -> Option<Layout> {
    match LAYOUT.load(Ordering::Acquire) {
        1 => Some(Layout::Classic),
        2 => Some(Layout::Compact),
        _ => None,
    }
}

/// `malloc_usable_size` of any live pointer's header, as the running glibc computes it.
#[inline]
pub fn usable(h: Header) -> usize {
    h.usable(layout().unwrap_or(Layout::Classic))
}

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
    let layout = if cfg.disabled || page != PAGE { None } else { probe_layout() };
    match layout {
        Some(l) => {
            if let Some(job) = config::find_job_cgroup() {
                // SAFETY: written once, here, before STATE = 2 publishes it (Release);
                // readers load STATE with Acquire first.
                unsafe { *JOB.0.get() = job };
                let high = job.limit / 100 * cfg.job_high_pct;
                JOB_HIGH.store(high, Ordering::Relaxed);
                JOB_SOFT.store(high / 3 * 2, Ordering::Relaxed);
                JOB_LIMIT.store(job.limit, Ordering::Relaxed);
            }
            CACHE.set_limits(cfg.budget, cfg.max_mappings, cfg.class_slots);
            LAYOUT.store(l as u8, Ordering::Release);
            THRESHOLD.store(cfg.threshold, Ordering::Relaxed);
        }
        None => {
            THRESHOLD.store(usize::MAX, Ordering::Relaxed);
            CACHE.set_limits(0, 0, 0);
        }
    }
    stats::count(cfg.stats);
    STATE.store(2, Ordering::Release);
}

/// Size of the probe: above glibc's largest dynamic mmap threshold (32 MiB), so freeing
/// it does not move glibc's threshold, and never touched beyond its header page.
const PROBE_SIZE: usize = 64 << 20;

/// Allocates and frees one chunk through glibc and reads its header to learn the layout
/// (glibc 2.43 changed it). If glibc served the probe from its heap (tuned thresholds),
/// the version string decides. Prints one line and returns `None` if neither works.
fn probe_layout() -> Option<Layout> {
    if perturbing() {
        // glibc would fill all 64 MiB of the probe with the perturb byte (every page faults).
        return version_layout();
    }
    // SAFETY: plain glibc allocation; freed below.
    let p = unsafe { real::libc_malloc(PROBE_SIZE) } as *const u8;
    if p.is_null() {
        return version_layout();
    }
    // SAFETY: glibc just returned p, so its chunk header precedes it.
    let h = unsafe { Header::read(p) };
    let probe = Layout::from_probe(p as usize, h, PROBE_SIZE);
    // SAFETY: our own probe allocation.
    unsafe { real::libc_free(p as *mut _) };
    match probe {
        Probe::Known(l) => Some(l),
        Probe::NotMapped => version_layout(),
        Probe::Unknown => {
            unknown_layout();
            None
        }
    }
}

/// Whether glibc's `MALLOC_PERTURB_` / `glibc.malloc.perturb` is set.
fn perturbing() -> bool {
    // SAFETY: getenv returns NULL or a NUL-terminated string of the environment.
    let set = |name: &core::ffi::CStr| unsafe { libc::getenv(name.as_ptr()) };
    if !set(c"MALLOC_PERTURB_").is_null() {
        return true;
    }
    let t = set(c"GLIBC_TUNABLES");
    // SAFETY: as above.
    !t.is_null() && unsafe { core::ffi::CStr::from_ptr(t) }.to_bytes().windows(7).any(|w| w == b"perturb")
}

fn version_layout() -> Option<Layout> {
    // SAFETY: returns a static NUL-terminated string.
    let v = unsafe { core::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let l = Layout::from_version(v.to_bytes());
    if l.is_none() {
        unknown_layout();
    }
    l
}

fn unknown_layout() {
    // SAFETY: returns a static NUL-terminated string.
    let v = unsafe { core::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    config::stderr(&[
        b"turingwatch-preload: unknown glibc mmapped-chunk layout (glibc ",
        v.to_bytes(),
        b"); passing every call through to glibc\n",
    ]);
}

/// The job's cgroup, written once by `ensure_init` before `STATE = 2`.
struct JobCell(UnsafeCell<JobCgroup>);
// SAFETY: written once before publication (STATE Release/Acquire), read-only afterwards.
unsafe impl Sync for JobCell {}
static JOB: JobCell = JobCell(UnsafeCell::new(JobCgroup { limit: 0, usage_path: [0; config::PATH_MAX] }));
/// The job's limit (0 = no job cgroup with a limit), and the marks derived from it.
static JOB_LIMIT: AtomicUsize = AtomicUsize::new(0);
static JOB_HIGH: AtomicUsize = AtomicUsize::new(0);
static JOB_SOFT: AtomicUsize = AtomicUsize::new(0);
/// Last verdict: 0 below the soft mark, 1 between the marks, 2 above the high mark.
static PRESSURE: AtomicU8 = AtomicU8::new(0);
/// When the counter was last read (CLOCK_MONOTONIC_COARSE ns), and our cache size then.
static LAST_CHECK: AtomicU64 = AtomicU64::new(0);
static CACHED_AT_CHECK: AtomicUsize = AtomicUsize::new(0);
/// How often the job's counter is read at most, unless our cache grew meanwhile.
const CHECK_NS: u64 = 2_000_000;

fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the current time into `t` (vDSO, no allocation).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}

/// The job's memory pressure (0, 1, 2; see [`PRESSURE`]). Reads the cgroup counter at
/// most every [`CHECK_NS`], or sooner when `force` or when this process's cache grew by
/// more than 1/256 of the limit since the last read (so 16 processes together can add
/// at most 1/16 of the limit unseen). Above the high mark the cache is released here.
fn job_pressure(force: bool) -> u8 {
    let limit = JOB_LIMIT.load(Ordering::Relaxed);
    if limit == 0 || STATE.load(Ordering::Acquire) != 2 {
        return 0;
    }
    let last = LAST_CHECK.load(Ordering::Relaxed);
    let now = now_ns();
    let grown = CACHE.cached_bytes() > CACHED_AT_CHECK.load(Ordering::Relaxed).saturating_add(limit / 256);
    if !force && !grown && now.wrapping_sub(last) < CHECK_NS {
        return PRESSURE.load(Ordering::Relaxed);
    }
    // One reader at a time; the others use the last verdict.
    if LAST_CHECK.compare_exchange(last, now.max(last + 1), Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return PRESSURE.load(Ordering::Relaxed);
    }
    // SAFETY: JOB was published before STATE = 2 (checked above) and is never written again.
    let job = unsafe { &*JOB.0.get() };
    let Some(usage) = config::read_usage(job.usage()) else {
        return 0; // unreadable: the per-process budget is the only bound
    };
    let level = if usage >= JOB_HIGH.load(Ordering::Relaxed) {
        2
    } else if usage >= JOB_SOFT.load(Ordering::Relaxed) {
        1
    } else {
        0
    };
    PRESSURE.store(level, Ordering::Relaxed);
    if level == 2 {
        let released = trim();
        STATS.pressure_releases.add(1);
        STATS.bytes_released_pressure.add(released as u64);
    }
    CACHED_AT_CHECK.store(CACHE.cached_bytes(), Ordering::Relaxed);
    level
}

/// This thread's stash in the cache (below [`STASHES`]): a hash of its thread id.
/// `pthread_self` only reads the thread pointer; it neither allocates nor locks.
#[inline]
fn my_stash() -> usize {
    // SAFETY: no preconditions.
    let id = unsafe { libc::pthread_self() } as usize;
    (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (usize::BITS - STASHES.trailing_zeros())) % STASHES
}

/// Unmaps a mapping and counts it as released.
fn release(base: usize, len: usize) {
    // SAFETY: only called with mappings this module owns exclusively (claimed from the
    // cache or refused by it).
    unsafe { real::unmap(base, len) };
    STATS.bytes_released.add(len as u64);
}

/// Returns a mapping to the cache (merged with cached neighbours), or to the kernel if
/// the job is short of memory or the cache refuses it.
fn recycle(base: usize, len: usize) {
    let level = job_pressure(false);
    if level >= 2 {
        release(base, len);
        return;
    }
    let stash = my_stash();
    let (mut base, mut len) = (base, len);
    for _ in 0..4 {
        match CACHE.take_adjacent(stash, base, len) {
            Some((b, l)) => {
                base = base.min(b);
                len += l;
                STATS.merges.add(1);
            }
            None => break,
        }
    }
    if level == 1 {
        // Kept, but the kernel may take the pages back instead of OOM-killing the job.
        // SAFETY: we own the range; MADV_FREE only drops contents we no longer need.
        unsafe { libc::madvise(base as *mut _, len, libc::MADV_FREE) };
    }
    if CACHE.stash_put(stash, base, len, &mut release) {
        STATS.cached_frees.add(1);
    } else {
        release(base, len);
    }
}

/// Splits an owned mapping `[base, base + len)` for a request of `need` bytes and returns
/// the length the request keeps. A tail of at least [`MIN_PIECE`] and 1/8 of the request
/// goes back to the cache (or to the kernel if the cache or the job refuses it). A smaller
/// tail stays with the chunk: unmapping it would throw away faulted pages for little
/// (at most 12.5 % + 64 KiB of slack), and `malloc_usable_size` reports it. When the job
/// is short of memory that slack is `MADV_FREE`d rather than held resident.
fn split(base: usize, len: usize, need: usize) -> usize {
    let rest = len - need;
    if rest == 0 {
        return len;
    }
    let tail = base + need;
    if rest < MIN_PIECE.max(need / 8) {
        if job_pressure(false) >= 1 {
            // SAFETY: we own the range; MADV_FREE only drops contents nobody uses yet.
            unsafe { libc::madvise(tail as *mut _, rest, libc::MADV_FREE) };
        }
        return len;
    }
    if job_pressure(false) >= 2 || !CACHE.stash_put(my_stash(), tail, rest, &mut release) {
        release(tail, rest);
    }
    need
}

/// A cached mapping claimed for a request: one that fits (to split), or a smaller one
/// to grow with `mremap` (its pages stay faulted in; only the new tail faults).
enum Reuse {
    Fit(usize, usize),
    Grow(usize, usize),
}

/// Claims the cached mapping that serves a request of `need` bytes best, in this order:
/// 1. the smallest that fits in this thread's stash (its pages are the hot ones), then
///    in the shared classes (nobody's);
/// 2. the largest smaller one in the stash, then in the shared classes, to grow;
/// 3. only then other threads' stashes (fit, then grow). Like a heap's per-thread arena
///    extending its top, a thread keeps its own region together instead of cutting up
///    another's: taking another thread's stashed tail leaves that thread to grow fresh
///    pages, and on 2-thread churn of 1–64 MiB blocks that doubled the page faults and
///    tripled the resident set (measured; see `scripts/bench/README.md`).
fn reuse(need: usize) -> Option<Reuse> {
    let stash = my_stash();
    let below = need.saturating_sub(PAGE);
    CACHE
        .stash_take(stash, need, usize::MAX, false)
        .map(|(b, l)| Reuse::Fit(b, l))
        .or_else(|| CACHE.take(need, usize::MAX, false).map(|(b, l)| Reuse::Fit(b, l)))
        .or_else(|| CACHE.stash_take(stash, PAGE, below, true).map(|(b, l)| Reuse::Grow(b, l)))
        .or_else(|| CACHE.take(PAGE, below, true).map(|(b, l)| Reuse::Grow(b, l)))
        .or_else(|| CACHE.take_stashed(need, usize::MAX, false).map(|(b, l)| Reuse::Fit(b, l)))
        .or_else(|| CACHE.take_stashed(PAGE, below, true).map(|(b, l)| Reuse::Grow(b, l)))
}

/// Allocates a large chunk of `n` user bytes aligned to `align` (16, or a power of two
/// above 16); the first `n` bytes are zero if `zero`. Null with `errno = ENOMEM` on failure.
pub fn alloc(n: usize, align: usize, zero: bool) -> *mut u8 {
    ensure_init();
    let Some(layout) = layout() else {
        // Another thread is still probing glibc (or the probe failed): glibc serves it.
        return libc_alloc(n, align, zero);
    };
    let need =
        if align <= HDR { chunk::mapping_len_for(n, layout) } else { chunk::aligned_mapping_len_for(n, align, layout) };
    let Some(need) = need.filter(|&l| l <= isize::MAX as usize) else {
        real::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    match reuse(need) {
        Some(Reuse::Fit(base, len)) => {
            STATS.hits.add(1);
            STATS.bytes_reused.add(need as u64); // the part the request can touch
            let keep = split(base, len, need);
            // SAFETY: we own [base, base + keep) exclusively now, keep >= need.
            let user = unsafe { chunk::install(base, keep, align, layout) };
            if zero {
                // SAFETY: user + n <= base + need by the sizing above.
                unsafe { core::ptr::write_bytes(user, 0, n) };
            }
            return user;
        }
        // SAFETY: we own [base, base + len) exclusively.
        Some(Reuse::Grow(base, len)) => match unsafe { real::remap(base, len, need) } {
            Some(nb) => {
                STATS.hits.add(1);
                STATS.bytes_reused.add(len as u64);
                // SAFETY: [nb, nb + need) is now our mapping.
                let user = unsafe { chunk::install(nb, need, align, layout) };
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
        },
        None => {}
    }
    // 3. Fresh pages: first make sure the job has room for them.
    STATS.misses.add(1);
    job_pressure(true);
    if let Some(base) = real::map(need) {
        // SAFETY: fresh mapping of `need` bytes, ours alone; mmap memory is already zero.
        return unsafe { chunk::install(base, need, align, layout) };
    }
    // Out of memory or of mappings (vm.max_map_count): give the cache back and retry.
    if trim() != 0
        && let Some(base) = real::map(need)
    {
        // SAFETY: as above.
        return unsafe { chunk::install(base, need, align, layout) };
    }
    // Last resort, like glibc past `mmap_max`: its heap. Its chunk is freed by glibc.
    libc_alloc(n, align, zero)
}

/// The same request served by glibc (it sets errno on failure).
fn libc_alloc(n: usize, align: usize, zero: bool) -> *mut u8 {
    // SAFETY: plain glibc allocations.
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
    match layout().and_then(|l| h.mapping(user as usize, l)) {
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
    let Some(layout) = layout() else {
        // SAFETY: not ours (we make no chunks without a layout): glibc's to resize.
        return unsafe { real::libc_realloc(user.cast(), n) }.cast();
    };
    let Some((base, len)) = h.mapping(user as usize, layout) else {
        // SAFETY: glibc diagnoses the bad pointer exactly as without the preload.
        return unsafe { real::libc_realloc(user.cast(), n) }.cast();
    };
    let usable = h.usable(layout);
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
    let Some(need) = off
        .checked_add(n)
        .and_then(|v| v.checked_add(layout.slack()))
        .and_then(chunk::page_round_up)
        .filter(|&l| l <= isize::MAX as usize)
    else {
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
                (chunk as *mut usize).add(1).write(layout.size_word(need, off - HDR));
            }
            (nb + off) as *mut u8
        }
        // mremap can fail when shrinking is impossible for the kernel; shrinking in
        // place is always valid, so keep the chunk as it is in that case.
        None if need <= len => user,
        None => {
            // A merged block can span two kernel mappings, which mremap refuses:
            // allocate, copy, free, like glibc when mremap fails.
            let np = alloc(n, 16, false); // realloc keeps malloc's alignment only, like glibc
            if !np.is_null() {
                // SAFETY: distinct live blocks; the old one holds `usable` bytes.
                unsafe { core::ptr::copy_nonoverlapping(user, np, usable.min(n)) };
                // SAFETY: ours, no longer used.
                unsafe { free(user, h) };
            }
            np
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
        CACHE.held().1 as u64,
        CACHE.held().0 as u64,
        CACHE.budget() as u64,
        threshold() as u64,
        STATS.cached_frees.get(),
        LAYOUT.load(Ordering::Relaxed) as u64,
        STATS.pressure_releases.get(),
        STATS.merges.get(),
        JOB_LIMIT.load(Ordering::Relaxed) as u64,
    ];
    let n = out.len().min(vals.len());
    out[..n].copy_from_slice(&vals[..n]);
    vals.len()
}

/// Prints the exit report if `TURINGWATCH_PRELOAD_STATS` asked for it.
pub fn report_at_exit() {
    // Silent in processes that never took the large path (shell helpers in a job script).
    if !stats::counting() || STATS.hits.get() + STATS.misses.get() == 0 {
        return;
    }
    let mut line = stats::Line::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    stats::render(&mut line, pid, &STATS, CACHE.held().1 as u64, CACHE.budget() as u64, PAGE as u64);
    line.push(match layout() {
        Some(Layout::Classic) => b"; glibc chunk layout classic (<= 2.42)".as_slice(),
        Some(Layout::Compact) => b"; glibc chunk layout compact (>= 2.43)".as_slice(),
        None => b"; glibc chunk layout unknown".as_slice(),
    });
    let limit = JOB_LIMIT.load(Ordering::Relaxed) as u64;
    if limit != 0 {
        line.push(b"; job limit ").num(limit).push(b", releases under pressure ").num(STATS.pressure_releases.get());
    }
    line.push(b"\n");
    config::stderr(&[line.as_bytes()]);
}
