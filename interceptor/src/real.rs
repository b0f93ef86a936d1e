//! Bindings to glibc's real allocator and to the raw memory syscalls.
//!
//! Why `__libc_*` and not `dlsym(RTLD_NEXT, "malloc")`: libc.so.6 exports these entry
//! points directly (GLIBC_2.2.5), so they are bound by the dynamic linker before any code
//! runs. `dlsym` can itself call `calloc` (error strings), which would recurse into us
//! before we could answer. Only `malloc_trim`, which has no `__libc_` alias, is looked up
//! with `dlsym`, once, from the library constructor and never on an allocation path.
//!
//! The syscall wrappers save and restore `errno` where glibc's `free` would (a failing
//! `munmap` inside `free` must not change `errno`, glibc test `tst-free-errno`).

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

unsafe extern "C" {
    /// glibc's `malloc`.
    #[link_name = "__libc_malloc"]
    pub fn libc_malloc(size: usize) -> *mut c_void;
    /// glibc's `free`.
    #[link_name = "__libc_free"]
    pub fn libc_free(ptr: *mut c_void);
    /// glibc's `calloc`.
    #[link_name = "__libc_calloc"]
    pub fn libc_calloc(nmemb: usize, size: usize) -> *mut c_void;
    /// glibc's `realloc`.
    #[link_name = "__libc_realloc"]
    pub fn libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    /// glibc's `memalign`.
    #[link_name = "__libc_memalign"]
    pub fn libc_memalign(align: usize, size: usize) -> *mut c_void;
    /// glibc's `valloc`.
    #[link_name = "__libc_valloc"]
    pub fn libc_valloc(size: usize) -> *mut c_void;
    /// glibc's `pvalloc`.
    #[link_name = "__libc_pvalloc"]
    pub fn libc_pvalloc(size: usize) -> *mut c_void;
}

/// glibc's `malloc_trim`, resolved by [`resolve_optional`]; 0 until then.
static GLIBC_MALLOC_TRIM: AtomicUsize = AtomicUsize::new(0);
/// glibc's `malloc_usable_size`, for pass-through mode (layout unknown).
static GLIBC_USABLE: AtomicUsize = AtomicUsize::new(0);
/// glibc's `aligned_alloc`, whose answer to odd alignments changed in 2.38 (ISO C17).
static GLIBC_ALIGNED_ALLOC: AtomicUsize = AtomicUsize::new(0);

/// Resolves the optional glibc entry points. Called from the library constructor only.
pub fn resolve_optional() {
    // SAFETY: RTLD_NEXT lookups of symbols glibc exports; the names are NUL-terminated.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_trim".as_ptr()) };
    GLIBC_MALLOC_TRIM.store(f as usize, Ordering::Release);
    // SAFETY: as above.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_usable_size".as_ptr()) };
    GLIBC_USABLE.store(f as usize, Ordering::Release);
    // SAFETY: as above.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"aligned_alloc".as_ptr()) };
    GLIBC_ALIGNED_ALLOC.store(f as usize, Ordering::Release);
}

/// glibc's own `aligned_alloc(align, n)`, if it was resolved.
pub fn glibc_aligned_alloc(align: usize, n: usize) -> Option<*mut c_void> {
    let f = GLIBC_ALIGNED_ALLOC.load(Ordering::Acquire);
    if f == 0 {
        return None;
    }
    // SAFETY: `f` is glibc's `void *aligned_alloc(size_t, size_t)`.
    let f: unsafe extern "C" fn(usize, usize) -> *mut c_void = unsafe { core::mem::transmute(f) };
    // SAFETY: plain call into glibc; it sets errno on failure.
    Some(unsafe { f(align, n) })
}

/// glibc's own `malloc_usable_size(p)`, if it was resolved.
///
/// # Safety
/// `p` is a live malloc-family pointer.
pub unsafe fn glibc_usable(p: *mut c_void) -> Option<usize> {
    let f = GLIBC_USABLE.load(Ordering::Acquire);
    if f == 0 {
        return None;
    }
    // SAFETY: `f` is glibc's `size_t malloc_usable_size(void *)`.
    let f: unsafe extern "C" fn(*mut c_void) -> usize = unsafe { core::mem::transmute(f) };
    // SAFETY: caller's contract.
    Some(unsafe { f(p) })
}

/// Calls glibc's `malloc_trim(pad)` if it was resolved; returns 0 otherwise.
pub fn glibc_malloc_trim(pad: usize) -> i32 {
    let f = GLIBC_MALLOC_TRIM.load(Ordering::Acquire);
    if f == 0 {
        return 0;
    }
    // SAFETY: `f` is the address dlsym returned for glibc's
    // `int malloc_trim(size_t)`, which has exactly this signature.
    let f: unsafe extern "C" fn(usize) -> i32 = unsafe { core::mem::transmute(f) };
    // SAFETY: plain call into glibc.
    unsafe { f(pad) }
}

/// Current `errno`.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets `errno`.
#[inline]
pub fn set_errno(e: i32) {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// Anonymous private read-write mapping of `len` bytes; `None` (errno = ENOMEM) on failure.
#[inline]
pub fn map(len: usize) -> Option<usize> {
    // SAFETY: anonymous mapping at a kernel-chosen address; touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        set_errno(libc::ENOMEM);
        None
    } else {
        Some(p as usize)
    }
}

/// Unmaps `[base, base + len)`, preserving `errno`.
///
/// # Safety
/// The caller must own the range and nobody may use it afterwards.
#[inline]
pub unsafe fn unmap(base: usize, len: usize) {
    let saved = errno();
    // SAFETY: by the caller's contract the range is ours and dead.
    unsafe { libc::munmap(base as *mut c_void, len) };
    set_errno(saved);
}

/// `mremap(MREMAP_MAYMOVE)`; `None` (errno = ENOMEM) on failure, the old mapping intact.
///
/// # Safety
/// The caller must own `[base, base + old_len)`; on success the old range is gone.
#[inline]
pub unsafe fn remap(base: usize, old_len: usize, new_len: usize) -> Option<usize> {
    // SAFETY: by the caller's contract the range is ours; MAYMOVE never clobbers others.
    let p = unsafe { libc::mremap(base as *mut c_void, old_len, new_len, libc::MREMAP_MAYMOVE) };
    if p == libc::MAP_FAILED {
        set_errno(libc::ENOMEM);
        None
    } else {
        Some(p as usize)
    }
}
