//! glibc's mmapped-chunk layout, as named offsets.
//!
//! Why this module exists: every large chunk we hand out is laid out exactly like a
//! chunk that glibc's `sysmalloc_mmap` / `_int_memalign` would have produced. That is
//! what lets glibc free, `realloc` (via `mremap`) and size our pointers, and lets us
//! classify any pointer we are handed by reading one word in front of it. Nothing in
//! here touches memory by itself; callers read the header words through the helpers
//! below only after they decided the pointer came from a malloc-family function.
//!
//! Layout of a mapping of `len` bytes at page-aligned `base` (glibc 2.36, 64-bit):
//!
//! ```text
//! base                         chunk = base + off        user = chunk + 16
//! |<-------- off bytes -------->|[prev_size = off][size = (len - off) | IS_MMAPPED | OWN][user data ...]
//! ```
//!
//! glibc always writes `off = 0` for plain `malloc` and `off = lead` for `memalign`.
//! `OWN` is glibc's PREV_INUSE bit (bit 0), which glibc never sets on mmapped chunks;
//! we set it on ours so `free` can tell our chunks from glibc-created ones.

/// Size of one header word (`SIZE_SZ` in glibc).
pub const SIZE_SZ: usize = 8;
/// Bytes from chunk start to the user pointer (`CHUNK_HDR_SZ` = 2 × `SIZE_SZ`).
pub const HDR: usize = 2 * SIZE_SZ;
/// glibc's PREV_INUSE flag. Never set by glibc on an mmapped chunk, so we use it as
/// the "this mapping was created by turingwatch" marker.
pub const OWN: usize = 0x1;
/// glibc's IS_MMAPPED flag.
pub const IS_MMAPPED: usize = 0x2;
/// glibc's NON_MAIN_ARENA flag (only masked here).
pub const NON_MAIN_ARENA: usize = 0x4;
/// All flag bits that `chunksize()` masks.
pub const FLAGS: usize = OWN | IS_MMAPPED | NON_MAIN_ARENA;
/// Page size the layout is computed for. `lib.rs` disables the cache if the
/// kernel reports something else.
pub const PAGE: usize = 4096;

/// Rounds `n` up to a whole number of pages; `None` on overflow.
#[inline]
pub const fn page_round_up(n: usize) -> Option<usize> {
    match n.checked_add(PAGE - 1) {
        Some(v) => Some(v & !(PAGE - 1)),
        None => None,
    }
}

/// Mapping length for a plain (16-aligned) large chunk of `n` user bytes.
#[inline]
pub const fn mapping_len_for(n: usize) -> Option<usize> {
    match n.checked_add(HDR) {
        Some(v) => page_round_up(v),
        None => None,
    }
}

/// Mapping length that is always enough for `n` user bytes aligned to `align`
/// (a power of two above 16), wherever the page-aligned mapping lands.
#[inline]
pub const fn aligned_mapping_len_for(n: usize, align: usize) -> Option<usize> {
    // user = align_up(base + 16, align) <= base + max(align, 16) + ... ; the worst case
    // is `user - base == align` (base itself aligned), so `align + n` bytes suffice.
    match n.checked_add(align) {
        Some(v) => page_round_up(v),
        None => None,
    }
}

/// Header values read in front of a user pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `prev_size` word: for mmapped chunks, the offset of the chunk from the mapping start.
    pub prev_size: usize,
    /// Raw size word, flags included.
    pub size_word: usize,
}

impl Header {
    /// Reads the two header words in front of `user`.
    ///
    /// # Safety
    /// `user` must be a pointer returned by a malloc-family function and not yet freed
    /// (glibc guarantees the 16 bytes in front of it are its chunk header).
    #[inline]
    pub unsafe fn read(user: *const u8) -> Header {
        // SAFETY: by the caller's contract the 16 bytes before `user` are the chunk
        // header of a live chunk; they are 8-aligned because `user` is 16-aligned.
        unsafe {
            let words = user.sub(HDR) as *const usize;
            Header { prev_size: words.read(), size_word: words.add(1).read() }
        }
    }

    /// `chunksize()`: the size with the flag bits masked.
    #[inline]
    pub const fn chunk_size(&self) -> usize {
        self.size_word & !FLAGS
    }

    /// Whether glibc would treat the chunk as mmapped.
    #[inline]
    pub const fn is_mmapped(&self) -> bool {
        self.size_word & IS_MMAPPED != 0
    }

    /// Whether the chunk is one of ours (mmapped and carrying the OWN bit).
    #[inline]
    pub const fn is_ours(&self) -> bool {
        self.size_word & (IS_MMAPPED | OWN) == (IS_MMAPPED | OWN)
    }

    /// The mapping `(base, len)` of an mmapped chunk, validated exactly like glibc's
    /// `munmap_chunk`: base and length page-aligned, `user % PAGE` zero or a power of two.
    /// Returns `None` for anything glibc itself would reject.
    #[inline]
    pub fn mapping(&self, user: usize) -> Option<(usize, usize)> {
        let chunk = user.checked_sub(HDR)?;
        let base = chunk.checked_sub(self.prev_size)?;
        let len = self.prev_size.checked_add(self.chunk_size())?;
        let low = user & (PAGE - 1);
        if (base | len) & (PAGE - 1) != 0 || len == 0 || low & low.wrapping_sub(1) != 0 {
            return None;
        }
        Some((base, len))
    }

    /// `malloc_usable_size` as glibc computes it: mmapped → size − 16, heap → size − 8.
    #[inline]
    pub const fn usable(&self) -> usize {
        let cs = self.chunk_size();
        if self.is_mmapped() { cs.saturating_sub(HDR) } else { cs.saturating_sub(SIZE_SZ) }
    }
}

/// Writes the header of one of our chunks into a mapping and returns the user pointer.
///
/// `align` is 16 for plain chunks, else a power of two; the caller sized the mapping
/// with [`mapping_len_for`] / [`aligned_mapping_len_for`].
///
/// # Safety
/// `[base, base + len)` must be a writable mapping owned exclusively by the caller,
/// `base` page-aligned, and `len` large enough for the alignment as described above.
#[inline]
pub unsafe fn install(base: usize, len: usize, align: usize) -> *mut u8 {
    let user = if align <= HDR { base + HDR } else { (base + HDR + align - 1) & !(align - 1) };
    let chunk = user - HDR;
    let off = chunk - base;
    // SAFETY: `chunk` lies inside the caller's exclusively owned mapping, is 8-aligned,
    // and `chunk + 16 <= base + len` by the sizing contract.
    unsafe {
        let words = chunk as *mut usize;
        words.write(off);
        words.add(1).write((len - off) | IS_MMAPPED | OWN);
    }
    user as *mut u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(page_round_up(1), Some(4096));
        assert_eq!(page_round_up(4096), Some(4096));
        assert_eq!(page_round_up(usize::MAX), None);
        assert_eq!(mapping_len_for(128 * 1024), Some(128 * 1024 + 4096));
        assert_eq!(mapping_len_for(4096 - 16), Some(4096));
        assert_eq!(mapping_len_for(usize::MAX - 8), None);
        assert_eq!(aligned_mapping_len_for(1 << 20, 1 << 16), Some((1 << 20) + (1 << 16)));
    }

    #[test]
    fn install_and_read_back() {
        let layout = std::alloc::Layout::from_size_align(1 << 18, PAGE).unwrap();
        // SAFETY: plain test allocation, freed below.
        let base = unsafe { std::alloc::alloc(layout) } as usize;
        for align in [16usize, 32, 64, 4096, 65536] {
            // SAFETY: the test owns the whole allocation; 256 KiB covers 64 KiB alignment.
            let user = unsafe { install(base, 1 << 18, align) } as usize;
            assert_eq!(user % align.max(16), 0);
            // SAFETY: `install` just wrote the header.
            let h = unsafe { Header::read(user as *const u8) };
            assert!(h.is_mmapped() && h.is_ours());
            assert_eq!(h.mapping(user), Some((base, 1 << 18)));
            assert_eq!(user + h.usable(), base + (1 << 18));
        }
        // SAFETY: allocated above with the same layout.
        unsafe { std::alloc::dealloc(base as *mut u8, layout) };
    }

    #[test]
    fn glibc_shapes() {
        // malloc(1 MiB) as measured: prev_size 0, size 0x101002, usable 1052656.
        let h = Header { prev_size: 0, size_word: 0x101002 };
        assert!(h.is_mmapped() && !h.is_ours());
        assert_eq!(h.usable(), 1052656);
        assert_eq!(h.mapping(0x7f00_0000_0010), Some((0x7f00_0000_0000, 0x101000)));
        // memalign(64K, 1 MiB) as measured: prev_size 0x3ff0, size 0x10d012.
        let h = Header { prev_size: 0x3ff0, size_word: 0x10d012 };
        let user = 0x7f00_0000_0000 + 0x3ff0 + 16;
        assert_eq!(h.mapping(user), Some((0x7f00_0000_0000, 0x111000)));
        // A heap chunk: in-use size − 8.
        let h = Header { prev_size: 0, size_word: 0x71 };
        assert!(!h.is_mmapped());
        assert_eq!(h.usable(), 0x68);
        // Corrupt headers are rejected like munmap_chunk() would.
        let h = Header { prev_size: 8, size_word: 0x1002 };
        assert_eq!(h.mapping(0x7f00_0000_0010), None);
    }
}
