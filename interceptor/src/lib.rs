//! `libturingwatch_preload.so`: an `LD_PRELOAD` interposer that caches large freed chunks.
//!
//! Why: jobs that repeatedly allocate and free large buffers pay for `mmap`, `munmap` and
//! above all a page fault per 4 KiB page on every round. Keeping freed large mappings in
//! a bounded cache turns those faults into warm-page touches, without changing the program.
//!
//! # Safety contract
//! - Every exported function has glibc 2.36's semantics (EINVAL/ENOMEM cases, `free`
//!   preserving `errno`, `realloc(p, 0)` freeing, non-power-of-two `memalign` alignments
//!   rounded up, lenient `aligned_alloc`).
//! - Requests below the threshold go unchanged to glibc's `__libc_*` functions.
//! - Large chunks use glibc's mmapped-chunk layout (`chunk.rs`), so glibc can free,
//!   reallocate and size them, and we accept any pointer glibc made: pointers are
//!   classified by one header word, exactly like glibc's own `free` does.
//! - The allocation paths never allocate, lock, use thread-locals or panic
//!   (`panic = "abort"`, checked arithmetic); they are as signal- and fork-safe as glibc.
//! - The symbols are only exported from the `cdylib`; `cargo test` builds the cache core
//!   with `std` and without the exports, so the test harness keeps its own allocator.

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub mod cache;
pub mod chunk;
pub mod config;
#[cfg(not(test))]
mod large;
pub mod real;
pub mod stats;

#[cfg(not(test))]
mod exports {
    use core::ffi::{c_int, c_void};
    use core::ptr::null_mut;

    use crate::chunk::{Header, IS_MMAPPED, PAGE, SIZE_SZ};
    use crate::large::{self, threshold};
    use crate::real;

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        // SAFETY: abort has no preconditions; nothing on our paths is meant to panic.
        unsafe { libc::abort() }
    }

    /// Library constructor: configure early so invalid settings are reported at start,
    /// and resolve glibc's `malloc_trim`.
    extern "C" fn init() {
        large::ensure_init();
        real::resolve_optional();
    }

    /// Library destructor: the optional statistics report.
    extern "C" fn fini() {
        large::report_at_exit();
    }

    #[used]
    #[unsafe(link_section = ".init_array")]
    static INIT: extern "C" fn() = init;

    #[used]
    #[unsafe(link_section = ".fini_array")]
    static FINI: extern "C" fn() = fini;

    /// `malloc`: large requests become cached mmapped chunks, the rest goes to glibc.
    ///
    /// # Safety
    /// Same contract as C `malloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn malloc(n: usize) -> *mut c_void {
        if n < threshold() {
            // SAFETY: forwarding to glibc.
            return unsafe { real::libc_malloc(n) };
        }
        large::alloc(n, 16, false).cast()
    }

    /// `free`: our chunks go to the cache, everything else to glibc. Preserves `errno`.
    ///
    /// # Safety
    /// `p` is null or a live pointer from any malloc-family function of this process.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn free(p: *mut c_void) {
        if p.is_null() {
            return;
        }
        // SAFETY: p is a live malloc pointer, so its chunk's size word precedes it.
        // A heap chunk (IS_MMAPPED clear: every small one) goes straight to glibc: one
        // memory test and a jump, the fewest instructions on the path every small `free`
        // takes (callgrind: see scripts/bench/README.md).
        // The flags are in the size word's low byte: its first byte on little-endian.
        const FLAGS_AT: usize = if cfg!(target_endian = "little") { SIZE_SZ } else { 1 };
        if unsafe { (p as *const u8).sub(FLAGS_AT).read() } as usize & IS_MMAPPED == 0 {
            // SAFETY: a glibc heap chunk: glibc frees it.
            return unsafe { real::libc_free(p) };
        }
        // SAFETY: as above; the whole header is readable.
        let h = unsafe { Header::read(p as *const u8) };
        if h.is_ours() {
            // SAFETY: header says it is one of our mapped chunks.
            unsafe { large::free(p.cast(), h) }
        } else {
            // SAFETY: a glibc chunk (heap or glibc-mmapped): glibc frees it.
            unsafe { real::libc_free(p) }
        }
    }

    /// `calloc`: overflow-checked; large chunks are zeroed if they come from the cache.
    ///
    /// # Safety
    /// Same contract as C `calloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn calloc(nmemb: usize, size: usize) -> *mut c_void {
        let Some(total) = nmemb.checked_mul(size) else {
            real::set_errno(libc::ENOMEM);
            return null_mut();
        };
        if total < threshold() {
            // SAFETY: forwarding to glibc.
            return unsafe { real::libc_calloc(nmemb, size) };
        }
        large::alloc(total, 16, true).cast()
    }

    /// `realloc` with glibc semantics: `realloc(NULL, n)` = `malloc(n)`, `realloc(p, 0)`
    /// frees `p` and returns NULL, on failure NULL and the old block stays valid.
    ///
    /// # Safety
    /// `p` is null or a live pointer from any malloc-family function of this process.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn realloc(p: *mut c_void, n: usize) -> *mut c_void {
        if p.is_null() {
            // SAFETY: same contract.
            return unsafe { malloc(n) };
        }
        if n == 0 {
            // SAFETY: p is live; glibc's REALLOC_ZERO_BYTES_FREES behaviour.
            unsafe { free(p) };
            return null_mut();
        }
        // SAFETY: p is live, so its header is readable.
        let h = unsafe { Header::read(p as *const u8) };
        if h.is_ours() {
            // SAFETY: header says it is ours.
            return unsafe { large::realloc(p.cast(), h, n) }.cast();
        }
        if h.is_mmapped() || n < threshold() {
            // glibc-made mmapped chunk (glibc mremaps it), or small stays small.
            // SAFETY: forwarding to glibc.
            return unsafe { real::libc_realloc(p, n) };
        }
        // A glibc heap chunk growing past the threshold becomes one of ours.
        let np = large::alloc(n, 16, false);
        if !np.is_null() {
            // SAFETY: both blocks are live and distinct; the old one holds `usable` bytes.
            unsafe { core::ptr::copy_nonoverlapping(p as *const u8, np, large::usable(h).min(n)) };
            // SAFETY: glibc chunk, now unused.
            unsafe { real::libc_free(p) };
        }
        np.cast()
    }

    /// `reallocarray`: `realloc(p, nmemb * size)` with an overflow check (ENOMEM).
    ///
    /// # Safety
    /// Same contract as `realloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn reallocarray(p: *mut c_void, nmemb: usize, size: usize) -> *mut c_void {
        match nmemb.checked_mul(size) {
            // SAFETY: same contract.
            Some(total) => unsafe { realloc(p, total) },
            None => {
                real::set_errno(libc::ENOMEM);
                null_mut()
            }
        }
    }

    /// glibc's `_mid_memalign`: alignments up to 16 are plain `malloc`, above
    /// `SIZE_MAX / 2 + 1` EINVAL, non-powers of two rounded up.
    fn aligned(align: usize, n: usize) -> *mut c_void {
        if align <= 16 {
            // SAFETY: same contract as malloc.
            return unsafe { malloc(n) };
        }
        if align > usize::MAX / 2 + 1 {
            real::set_errno(libc::EINVAL);
            return null_mut();
        }
        let align = align.next_power_of_two();
        if n < threshold() {
            // SAFETY: forwarding to glibc.
            return unsafe { real::libc_memalign(align, n) };
        }
        large::alloc(n, align, false).cast()
    }

    /// `memalign`, see [`aligned`].
    ///
    /// # Safety
    /// Same contract as C `memalign`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memalign(align: usize, n: usize) -> *mut c_void {
        aligned(align, n)
    }

    /// `aligned_alloc`: a power-of-two alignment is `memalign`; any other alignment gets
    /// whatever the running glibc does with it (2.36 rounds it up like `memalign`, 2.38+
    /// follows ISO C17 and fails with EINVAL).
    ///
    /// # Safety
    /// Same contract as C `aligned_alloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn aligned_alloc(align: usize, n: usize) -> *mut c_void {
        if !align.is_power_of_two()
            && let Some(p) = real::glibc_aligned_alloc(align, n)
        {
            return p;
        }
        aligned(align, n)
    }

    /// `posix_memalign`: EINVAL unless `align` is a power-of-two multiple of
    /// `sizeof(void *)`; `*out` untouched on error.
    ///
    /// # Safety
    /// `out` must be writable.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, n: usize) -> c_int {
        let words = align / core::mem::size_of::<usize>();
        if align % core::mem::size_of::<usize>() != 0 || !words.is_power_of_two() {
            return libc::EINVAL;
        }
        let p = aligned(align, n);
        if p.is_null() {
            return libc::ENOMEM;
        }
        // SAFETY: caller's contract.
        unsafe { out.write(p) };
        0
    }

    /// `valloc`: page-aligned.
    ///
    /// # Safety
    /// Same contract as C `valloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn valloc(n: usize) -> *mut c_void {
        if n < threshold() {
            // SAFETY: forwarding to glibc.
            return unsafe { real::libc_valloc(n) };
        }
        large::alloc(n, PAGE, false).cast()
    }

    /// `pvalloc`: page-aligned, size rounded up to whole pages (ENOMEM on overflow).
    ///
    /// # Safety
    /// Same contract as C `pvalloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn pvalloc(n: usize) -> *mut c_void {
        let Some(rounded) = crate::chunk::page_round_up(n) else {
            real::set_errno(libc::ENOMEM);
            return null_mut();
        };
        if rounded < threshold() {
            // SAFETY: forwarding to glibc.
            return unsafe { real::libc_pvalloc(n) };
        }
        large::alloc(rounded, PAGE, false).cast()
    }

    /// `malloc_usable_size`: computed from the header exactly as glibc does.
    ///
    /// # Safety
    /// `p` is null or a live malloc-family pointer.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
        if p.is_null() {
            return 0;
        }
        if large::layout().is_none()
            // SAFETY: p is live; pass-through mode asks glibc itself.
            && let Some(u) = unsafe { real::glibc_usable(p) }
        {
            return u;
        }
        // SAFETY: p is live, so its header is readable.
        large::usable(unsafe { Header::read(p as *const u8) })
    }

    /// `malloc_trim`: empties our cache, then lets glibc trim its heaps.
    /// Returns 1 if any memory was released.
    ///
    /// # Safety
    /// No preconditions beyond C's.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn malloc_trim(pad: usize) -> c_int {
        let saved = real::errno();
        let ours = large::trim();
        let theirs = real::glibc_malloc_trim(pad);
        real::set_errno(saved);
        c_int::from(ours != 0 || theirs != 0)
    }

    /// C23 `free_sized`: the size is only a hint.
    ///
    /// # Safety
    /// Same contract as `free`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn free_sized(p: *mut c_void, _size: usize) {
        // SAFETY: same contract.
        unsafe { free(p) }
    }

    /// C23 `free_aligned_sized`: alignment and size are only hints.
    ///
    /// # Safety
    /// Same contract as `free`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) {
        // SAFETY: same contract.
        unsafe { free(p) }
    }

    /// Statistics for tests and tools: fills up to `n` values into `out` in this order:
    /// hits, misses, bytes reused, bytes released, cached bytes, cached mappings, budget,
    /// threshold, frees into the cache, chunk layout (0 none, 1 classic <= 2.42,
    /// 2 compact >= 2.43), releases under job pressure, merges, job limit (0 = none).
    /// Returns the number of values available. The event counters (hits, misses, bytes,
    /// frees, releases, merges) count only with `TURINGWATCH_PRELOAD_STATS=1`; the cache's
    /// contents and settings are always current.
    ///
    /// # Safety
    /// `out` must be valid for `n` writes (or `n == 0`).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn turingwatch_preload_stats(out: *mut u64, n: usize) -> usize {
        if out.is_null() || n == 0 {
            return large::snapshot(&mut []);
        }
        // SAFETY: caller's contract.
        let out = unsafe { core::slice::from_raw_parts_mut(out, n) };
        large::snapshot(out)
    }
}
