//! glibc's mmapped-chunk layouts, as named offsets.
//!
//! Why this module exists: every large chunk we hand out is laid out exactly like a
//! chunk that the running glibc's `sysmalloc_mmap` / `_int_memalign` would have produced.
//! That is what lets glibc free, `realloc` (via `mremap`) and size our pointers, and lets
//! us classify any pointer we are handed by reading one word in front of it. Nothing in
//! here touches memory by itself; callers read the header words through the helpers
//! below only after they decided the pointer came from a malloc-family function.
//!
//! glibc has used two layouts for a mapping of `len` bytes at page-aligned `base` with the
//! chunk at `base + off` (64-bit):
//!
//! ```text
//! base                         chunk = base + off        user = chunk + 16
//! |<-------- off bytes -------->|[prev_size][size | IS_MMAPPED][user data ...]
//! ```
//!
//! - [`Layout::Classic`] (glibc <= 2.42): `prev_size = off`, `size = len - off`;
//!   `malloc_usable_size` is `size - 16`.
//! - [`Layout::Compact`] (glibc >= 2.43, commit 614cfd0f8a "malloc: Change mmap chunk
//!   layout"): `prev_size = off | MMAP_HP` (bit 0 marks a huge-page mapping),
//!   `size = len - off - 16`, so `munmap_chunk` unmaps `off + size + 16` bytes;
//!   `malloc_usable_size` is `size - 8` (`memsize`).
//!
//! A chunk written in one layout aborts in the other glibc's `free` ("munmap_chunk():
//! invalid pointer", the length is 16 bytes off a page), so the layout is probed once at
//! start-up ([`Layout::from_probe`]) and never assumed.
//!
//! glibc writes `off = 0` for plain `malloc` and `off = lead` for `memalign`.
//! `OWN` is glibc's PREV_INUSE bit (bit 0 of the size word), which no glibc sets on
//! mmapped chunks and which every glibc masks (`chunksize`); we set it on ours so `free`
//! can tell our chunks from glibc-created ones.

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
/// glibc 2.43's `MMAP_HP`: bit 0 of an mmapped chunk's `prev_size` (huge-page mapping).
pub const MMAP_HP: usize = 0x1;
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

/// Mapping length for a plain (16-aligned) large chunk of `n` user bytes, so that
/// `malloc_usable_size` in `layout` is at least `n`.
#[inline]
pub const fn mapping_len_for(n: usize, layout: Layout) -> Option<usize> {
    match n.checked_add(HDR + layout.slack()) {
        Some(v) => page_round_up(v),
        None => None,
    }
}

/// Mapping length that is always enough for `n` user bytes aligned to `align`
/// (a power of two above 16), wherever the page-aligned mapping lands.
#[inline]
pub const fn aligned_mapping_len_for(n: usize, align: usize, layout: Layout) -> Option<usize> {
    // user = align_up(base + 16, align) <= base + max(align, 16) + ... ; the worst case
    // is `user - base == align` (base itself aligned), so `align + n` bytes suffice.
    match n.checked_add(align + layout.slack()) {
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

    /// The mapping `(base, len)` of an mmapped chunk in `layout`, validated exactly like
    /// glibc's `munmap_chunk`: base and length page-aligned, `user % PAGE` zero or a power
    /// of two. Returns `None` for anything glibc itself would reject.
    #[inline]
    pub fn mapping(&self, user: usize, layout: Layout) -> Option<(usize, usize)> {
        let off = match layout {
            Layout::Classic => self.prev_size,
            Layout::Compact => self.prev_size & !MMAP_HP,
        };
        let chunk = user.checked_sub(HDR)?;
        let base = chunk.checked_sub(off)?;
        let len = off.checked_add(self.chunk_size())?.checked_add(layout.tail())?;
        let low = user & (PAGE - 1);
        if (base | len) & (PAGE - 1) != 0 || len == 0 || low & low.wrapping_sub(1) != 0 {
            return None;
        }
        Some((base, len))
    }

    /// `malloc_usable_size` as the glibc of `layout` computes it.
    #[inline]
    pub const fn usable(&self, layout: Layout) -> usize {
        let cs = self.chunk_size();
        match layout {
            Layout::Classic if self.is_mmapped() => cs.saturating_sub(HDR),
            _ => cs.saturating_sub(SIZE_SZ),
        }
    }
}

/// Which mmapped-chunk layout the running glibc uses (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Layout {
    /// glibc <= 2.42: `size = len - off`.
    Classic = 1,
    /// glibc >= 2.43: `size = len - off - 16`, `prev_size` bit 0 = huge pages.
    Compact = 2,
}

/// Result of probing glibc's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The probe chunk was mmapped and its header matched exactly one layout.
    Known(Layout),
    /// glibc served the probe from its heap (a raised `mmap_threshold` or `mmap_max=0`):
    /// the header says nothing about the mmapped layout.
    NotMapped,
    /// An mmapped header that fits neither layout: we must not write chunks at all.
    Unknown,
}

impl Layout {
    /// Bytes at the end of the mapping that `malloc_usable_size` does not report
    /// (2.43's `memsize` keeps the last word for a next chunk's `prev_size`).
    #[inline]
    pub const fn slack(self) -> usize {
        match self {
            Layout::Classic => 0,
            Layout::Compact => SIZE_SZ,
        }
    }

    /// Bytes of the mapping after `off + size` (the part the size word excludes).
    #[inline]
    pub const fn tail(self) -> usize {
        match self {
            Layout::Classic => 0,
            Layout::Compact => HDR,
        }
    }

    /// Decides the layout from the header glibc wrote for `__libc_malloc(requested)` at
    /// `user`. glibc places a plain mmapped chunk at the start of its mapping (`off = 0`),
    /// so the chunk must be page-aligned, `prev_size` must be 0 (or `MMAP_HP` in 2.43), and
    /// exactly one of `size` / `size + 16` must be a whole number of pages covering the request.
    pub fn from_probe(user: usize, h: Header, requested: usize) -> Probe {
        if !h.is_mmapped() {
            return Probe::NotMapped;
        }
        let cs = h.chunk_size();
        let chunk = user.wrapping_sub(HDR);
        if h.size_word & OWN != 0 || chunk & (PAGE - 1) != 0 || h.prev_size & !MMAP_HP != 0 {
            return Probe::Unknown;
        }
        let need = requested.saturating_add(SIZE_SZ);
        let classic = h.prev_size == 0 && cs & (PAGE - 1) == 0 && cs >= need;
        let compact = cs.wrapping_add(HDR) & (PAGE - 1) == 0 && cs.saturating_add(HDR) >= need;
        match (classic, compact) {
            (true, false) => Probe::Known(Layout::Classic),
            (false, true) => Probe::Known(Layout::Compact),
            _ => Probe::Unknown,
        }
    }

    /// The layout a glibc version string ("2.36", "2.43.9000") implies, for when the
    /// probe chunk was not mmapped. `None` if the string is not a glibc 2.x version.
    pub fn from_version(v: &[u8]) -> Option<Layout> {
        let rest = v.strip_prefix(b"2.")?;
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 4 {
            return None;
        }
        let minor = rest[..digits].iter().fold(0u32, |m, &c| m * 10 + u32::from(c - b'0'));
        Some(if minor >= 43 { Layout::Compact } else { Layout::Classic })
    }

    /// The size word of one of our chunks at offset `off` in a mapping of `len` bytes.
    #[inline]
    pub const fn size_word(self, len: usize, off: usize) -> usize {
        (len - off - self.tail()) | IS_MMAPPED | OWN
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
pub unsafe fn install(base: usize, len: usize, align: usize, layout: Layout) -> *mut u8 {
    let user = if align <= HDR { base + HDR } else { (base + HDR + align - 1) & !(align - 1) };
    let chunk = user - HDR;
    let off = chunk - base;
    // SAFETY: `chunk` lies inside the caller's exclusively owned mapping, is 8-aligned,
    // and `chunk + 16 <= base + len` by the sizing contract.
    unsafe {
        let words = chunk as *mut usize;
        words.write(off);
        words.add(1).write(layout.size_word(len, off));
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
        let (c, k) = (Layout::Classic, Layout::Compact);
        assert_eq!(mapping_len_for(128 * 1024, c), Some(128 * 1024 + 4096));
        assert_eq!(mapping_len_for(4096 - 16, c), Some(4096));
        // 2.43 reports 8 bytes less, so the same request needs the next page.
        assert_eq!(mapping_len_for(4096 - 16, k), Some(8192));
        assert_eq!(mapping_len_for(4096 - 24, k), Some(4096));
        assert_eq!(mapping_len_for(usize::MAX - 8, c), None);
        assert_eq!(aligned_mapping_len_for(1 << 20, 1 << 16, c), Some((1 << 20) + (1 << 16)));
        assert_eq!(aligned_mapping_len_for(1 << 20, 1 << 16, k), Some((1 << 20) + (1 << 16) + 4096));
    }

    #[test]
    fn install_and_read_back() {
        let layout = std::alloc::Layout::from_size_align(1 << 18, PAGE).unwrap();
        // SAFETY: plain test allocation, freed below.
        let base = unsafe { std::alloc::alloc(layout) } as usize;
        for align in [16usize, 32, 64, 4096, 65536] {
            for layout in [Layout::Classic, Layout::Compact] {
                // SAFETY: the test owns the whole allocation; 256 KiB covers 64 KiB alignment.
                let user = unsafe { install(base, 1 << 18, align, layout) } as usize;
                assert_eq!(user % align.max(16), 0);
                // SAFETY: `install` just wrote the header.
                let h = unsafe { Header::read(user as *const u8) };
                assert!(h.is_mmapped() && h.is_ours());
                assert_eq!(h.mapping(user, layout), Some((base, 1 << 18)));
                let end = base + (1 << 18);
                match layout {
                    Layout::Classic => assert_eq!(user + h.usable(layout), end),
                    // 2.43: memsize = size - 8, the last 8 bytes are the next "prev_size".
                    Layout::Compact => assert_eq!(user + h.usable(layout), end - 8),
                }
                // Written in one layout, the header decodes to a broken mapping in the other:
                // exactly what makes glibc abort, so the layout must never be guessed.
                let other = if layout == Layout::Classic { Layout::Compact } else { Layout::Classic };
                assert_eq!(h.mapping(user, other), None);
            }
        }
        // SAFETY: allocated above with the same layout.
        unsafe { std::alloc::dealloc(base as *mut u8, layout) };
    }

    #[test]
    fn glibc_shapes() {
        // malloc(1 MiB) as measured: prev_size 0, size 0x101002, usable 1052656.
        let c = Layout::Classic;
        let h = Header { prev_size: 0, size_word: 0x101002 };
        assert!(h.is_mmapped() && !h.is_ours());
        assert_eq!(h.usable(c), 1052656);
        assert_eq!(h.mapping(0x7f00_0000_0010, c), Some((0x7f00_0000_0000, 0x101000)));
        assert_eq!(Layout::from_probe(0x7f00_0000_0010, h, 1 << 20), Probe::Known(c));
        // memalign(64K, 1 MiB) as measured: prev_size 0x3ff0, size 0x10d012.
        let h = Header { prev_size: 0x3ff0, size_word: 0x10d012 };
        let user = 0x7f00_0000_0000 + 0x3ff0 + 16;
        assert_eq!(h.mapping(user, c), Some((0x7f00_0000_0000, 0x111000)));
        // A heap chunk: in-use size − 8, in both layouts.
        let h = Header { prev_size: 0, size_word: 0x71 };
        assert!(!h.is_mmapped());
        assert_eq!(h.usable(c), 0x68);
        assert_eq!(h.usable(Layout::Compact), 0x68);
        assert_eq!(Layout::from_probe(0x5555_0000_0010, h, 1 << 20), Probe::NotMapped);
        // Corrupt headers are rejected like munmap_chunk() would.
        let h = Header { prev_size: 8, size_word: 0x1002 };
        assert_eq!(h.mapping(0x7f00_0000_0010, c), None);
    }

    /// glibc 2.43's layout, on headers built the way its `mmap_set_chunk` builds them:
    /// `prev_size = offset | (is_hp ? MMAP_HP : 0)`, `size = (mmap_size - offset - 16) | IS_MMAPPED`.
    #[test]
    fn glibc_243_shapes() {
        let k = Layout::Compact;
        let base = 0x7f00_0000_0000usize;
        // malloc(1 MiB): mapping ALIGN_UP(1 MiB + 8 + 16, 4096) = 0x101000.
        let h = Header { prev_size: 0, size_word: (0x101000 - 16) | IS_MMAPPED };
        assert_eq!(h.mapping(base + 16, k), Some((base, 0x101000)));
        assert_eq!(h.usable(k), 0x101000 - 16 - 8); // memsize = chunksize - CHUNK_HDR_SZ + SIZE_SZ
        assert_eq!(Layout::from_probe(base + 16, h, 1 << 20), Probe::Known(k));
        // The same chunk on huge pages: MMAP_HP in prev_size does not move the base.
        let hp = Header { prev_size: MMAP_HP, size_word: (0x200000 - 16) | IS_MMAPPED };
        assert_eq!(hp.mapping(base + 16, k), Some((base, 0x200000)));
        assert_eq!(Layout::from_probe(base + 16, hp, 1 << 20), Probe::Known(k));
        // memalign(64K, 1 MiB) after _int_memalign's mmap_set_chunk with offset 0xfff0.
        let h = Header { prev_size: 0xfff0, size_word: (0x111000 - 0xfff0 - 16) | IS_MMAPPED };
        assert_eq!(h.mapping(base + 0x10000, k), Some((base, 0x111000)));
        // A 2.43 chunk decoded as 2.36 is 16 bytes short: glibc 2.36 would reject it.
        assert_eq!(h.mapping(base + 0x10000, Layout::Classic), None);
        // Our own chunk in 2.43 layout: the size word glibc 2.43's munmap_chunk accepts.
        assert_eq!(k.size_word(0x101000, 0), (0x101000 - 16) | IS_MMAPPED | OWN);
        assert_eq!(Layout::Classic.size_word(0x101000, 0), 0x101000 | IS_MMAPPED | OWN);
    }

    #[test]
    fn probe_rejects_what_fits_no_layout() {
        let base = 0x7f00_0000_0000usize;
        let probe = |prev, size, user| Layout::from_probe(user, Header { prev_size: prev, size_word: size }, 1 << 20);
        // Neither size nor size + 16 is a page multiple.
        assert_eq!(probe(0, 0x101008 | IS_MMAPPED, base + 16), Probe::Unknown);
        // Too small for the request.
        assert_eq!(probe(0, 0x1000 | IS_MMAPPED, base + 16), Probe::Unknown);
        // Chunk not at the start of a page, or a non-zero offset for a plain malloc.
        assert_eq!(probe(0, 0x101000 | IS_MMAPPED, base + 32), Probe::Unknown);
        assert_eq!(probe(0x1000, 0x101000 | IS_MMAPPED, base + 16), Probe::Unknown);
        // Bit 0 of the size word set on an mmapped chunk: not a glibc we know.
        assert_eq!(probe(0, 0x101000 | IS_MMAPPED | OWN, base + 16), Probe::Unknown);
        // Classic with MMAP_HP set cannot be: only 2.43 sets prev_size bit 0.
        assert_eq!(probe(MMAP_HP, 0x101000 | IS_MMAPPED, base + 16), Probe::Unknown);
    }

    #[test]
    fn versions() {
        assert_eq!(Layout::from_version(b"2.36"), Some(Layout::Classic));
        assert_eq!(Layout::from_version(b"2.41"), Some(Layout::Classic));
        assert_eq!(Layout::from_version(b"2.42"), Some(Layout::Classic));
        assert_eq!(Layout::from_version(b"2.43"), Some(Layout::Compact));
        assert_eq!(Layout::from_version(b"2.43.9000"), Some(Layout::Compact));
        assert_eq!(Layout::from_version(b"3.0"), None);
        assert_eq!(Layout::from_version(b"2."), None);
        assert_eq!(Layout::from_version(b""), None);
    }
}
