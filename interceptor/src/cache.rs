//! The lock-free, bounded cache of freed large mappings.
//!
//! Why it looks like this:
//! - It runs inside `malloc`/`free`, possibly from signal handlers, in forked children
//!   and while threads exit, so it may not allocate, lock, use thread-locals or panic.
//!   All state is a fixed static table of atomic words.
//! - Each slot word *is* the ownership token of one mapping (`base`, `len` packed in one
//!   `usize`). A thread owns a cached mapping exactly when its CAS `word -> 0` succeeds,
//!   so there is no ABA problem and no link is ever stored inside a cached chunk (another
//!   thread may unmap a chunk at any moment, so reading through one would be unsound).
//! - Page faults are the cost we avoid, so the hit rate is what matters: entries are
//!   grouped in size classes (4 per power of two) and a lookup scans a *range* of
//!   classes (best fit up to 2x, or a smaller chunk to grow with `mremap`).
//! - Two levels, like a heap's per-thread arenas over a shared pool. A thread's *stash*
//!   (8 slots on one cache line, picked by hashing the thread id) holds what it freed and
//!   split off last; the shared size classes take a stash's overflow. A thread reuses its
//!   own stash first (its pages are hot, and no other thread writes those lines) and
//!   looks into other stashes only before faulting fresh pages. Measured on 2-thread
//!   churn (2026-12-02): the shared-only cache spent a quarter of its time on slot lines
//!   bouncing between the cores, and handing one thread's pages to the other slowed the
//!   page-touch loop itself by a third.
//! - Neighbours for merging are found through edge hints (`by_start` / `by_end`, indexed
//!   by a hash of the address), not by scanning every entry on every `free`.
//! - Memory is bounded by an atomic byte budget, a per-class slot limit and a cap on the
//!   number of cached mappings (bytes and entries share one word: one atomic update per
//!   put or claim; a thread's claims from its own stash stay reserved as that stash's
//!   credit and pay for its next put, so the owner's cycle does not write that word,
//!   whose `lock sub` was a third of the free path's samples in 2-thread churn); past them the oldest entries (by insertion stamp, the monotonic
//!   clock) are handed to the caller's `release` callback (munmap in the library,
//!   `dealloc` in tests).
//!
//! The cache never touches chunk memory itself, which is what makes it unit-testable
//! with ordinary heap blocks.

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;
#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Slots per size class (the per-class limit can be configured lower). At most 32: a
/// class's occupancy mask is one `u32`.
pub const SLOTS: usize = 32;
const _: () = assert!(SLOTS <= 32);
/// Per-thread stashes: a thread picks one by hashing its id (a collision only means
/// two threads share one).
pub const STASHES: usize = 64;
/// Entries in one stash: their slot words fill one cache line.
pub const STASH_SLOTS: usize = 8;
/// Size classes: 4 per power of two of the page count, up to 2^21 pages (8 GiB).
pub const NCLASS: usize = 79;
const PAGE_SHIFT: u32 = 12;
const PAGE: usize = 1 << PAGE_SHIFT;
/// Bits of the slot word that hold `base >> 12` (so `base < 2^48`).
const ADDR_BITS: u32 = 36;
const ADDR_MASK: usize = (1 << ADDR_BITS) - 1;
/// Largest page count that fits in the remaining bits of a slot word.
const MAX_PAGES: usize = (1 << (usize::BITS - ADDR_BITS)) - 1;
/// Buckets of the edge hints (by address of a mapping's first page and of the page
/// after its end). Small in loom builds, whose atomics are costly to model.
#[cfg(not(loom))]
const EDGES: usize = 1024;
#[cfg(loom)]
const EDGES: usize = 8;
/// A neighbour search scans every cached entry only while there are at most this many.
const SCAN_ENTRIES: usize = 16;

#[inline]
const fn edge(addr: usize) -> usize {
    ((addr >> PAGE_SHIFT).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (usize::BITS - EDGES.trailing_zeros())) % EDGES
}

/// Low bits of the usage word that count entries (the configured cap is at most 2^20).
const ENTRY_BITS: u32 = 24;
const ENTRY_MASK: usize = (1 << ENTRY_BITS) - 1;

/// `len` bytes and one entry in the packing of the usage word.
#[inline]
const fn units(len: usize) -> usize {
    ((len >> PAGE_SHIFT) << ENTRY_BITS) | 1
}
const _: () = assert!(MAX_PAGES < 1 << (usize::BITS - ENTRY_BITS - 8), "room for 256 cached maximal mappings");

/// Insertion stamp: the monotonic clock (vDSO, no shared write), so that `put`s on
/// different cores do not bounce a shared counter's cache line. Only the eviction
/// heuristic ("oldest first") reads it.
fn stamp() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the current time into `t`; no allocation.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}

/// Size class of a mapping of `pages` pages (`pages >= 1`). Monotonic in `pages`.
#[inline]
pub const fn class_of(pages: usize) -> usize {
    if pages < 4 {
        return pages.saturating_sub(1); // classes 0, 1, 2 for 1..=3 pages
    }
    let k = (usize::BITS - 1 - pages.leading_zeros()) as usize; // floor(log2), >= 2
    let sub = (pages >> (k - 2)) & 3;
    4 * k + sub - 5 // k = 2 starts at class 3
}

#[inline]
const fn encode(base: usize, len: usize) -> usize {
    (base >> PAGE_SHIFT) | ((len >> PAGE_SHIFT) << ADDR_BITS)
}

#[inline]
const fn decode(word: usize) -> (usize, usize) {
    ((word & ADDR_MASK) << PAGE_SHIFT, (word >> ADDR_BITS) << PAGE_SHIFT)
}

/// One thread's stash (see [`Cache::stash_put`]).
struct Stash {
    slots: [AtomicUsize; STASH_SLOTS],
    /// Insertion order within this stash (from `seq`): only compared with each other.
    stamps: [AtomicU64; STASH_SLOTS],
    seq: AtomicU64,
    /// Budget this stash holds in the shared usage word without an entry for it, packed
    /// like the usage word: what its owner claimed from its own stash, kept (up to
    /// [`Cache::credit_cap`]) to pay for its next put, so that the owner's take-and-free
    /// cycle never writes the shared usage line.
    credit: AtomicUsize,
}

impl Stash {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Stash {
            slots: [const { AtomicUsize::new(0) }; STASH_SLOTS],
            stamps: [const { AtomicU64::new(0) }; STASH_SLOTS],
            seq: AtomicU64::new(0),
            credit: AtomicUsize::new(0),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Stash {
            slots: core::array::from_fn(|_| AtomicUsize::new(0)),
            stamps: core::array::from_fn(|_| AtomicU64::new(0)),
            seq: AtomicU64::new(0),
            credit: AtomicUsize::new(0),
        }
    }
}

struct Class {
    slots: [AtomicUsize; SLOTS],
    /// Insertion stamps, read racily to find the oldest entry (a heuristic only).
    stamps: [AtomicU64; SLOTS],
    /// Occupancy hint: bit `i` is set whenever slot `i` holds an entry, except between a
    /// `put`'s slot CAS and its `fetch_or` (see [`Cache::mark`] and [`Cache::unmark`]).
    /// Lookups scan only the set bits, so a scan costs what the class holds, not 32 loads.
    occ: AtomicU32,
}

impl Class {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Class {
            slots: [const { AtomicUsize::new(0) }; SLOTS],
            stamps: [const { AtomicU64::new(0) }; SLOTS],
            occ: AtomicU32::new(0),
        }
    }

    /// loom's atomics are not `const`-constructible.
    #[cfg(loom)]
    fn new() -> Self {
        Class {
            slots: core::array::from_fn(|_| AtomicUsize::new(0)),
            stamps: core::array::from_fn(|_| AtomicU64::new(0)),
            occ: AtomicU32::new(0),
        }
    }
}

/// A bounded cache of page-aligned `(base, len)` ranges.
pub struct Cache {
    classes: [CachePadded<Class>; NCLASS],
    /// Non-empty-class hint, bit `c % 64` of word `c / 64`, kept with the same protocol
    /// as the occupancy masks: a neighbour search (`take_adjacent`, on every free) reads
    /// two words instead of 79 class lines that other threads write.
    nonempty: CachePadded<[AtomicU64; 2]>,
    /// Cached pages `<< ENTRY_BITS` plus cached entries, in one word so that a `put` or a
    /// claim updates both with one atomic operation on one cache line. Includes the
    /// stashes' credit (reserved, not yet used by an entry).
    usage: CachePadded<AtomicUsize>,
    /// The first level: each thread's last freed mappings and split tails, on cache
    /// lines only that thread normally writes. The same slot protocol as the classes
    /// (a CAS claims), so any thread, `drain` and eviction can take from any stash.
    stashes: [CachePadded<Stash>; STASHES],
    /// Edge hints for the neighbour search in the shared classes: `by_start[edge(base)]`
    /// and `by_end[edge(base + len)]` hold `class * SLOTS + slot + 1` of the last entry
    /// put there with that start or end. Hints only (validated and claimed by CAS), so a collision
    /// or a stale one costs a merge, never ownership.
    by_start: [AtomicU32; EDGES],
    by_end: [AtomicU32; EDGES],
    budget: AtomicUsize,
    max_entries: AtomicUsize,
    class_slots: AtomicUsize,
}

impl Cache {
    /// An empty cache with the given limits (loom build: not `const`).
    #[cfg(loom)]
    pub fn new(budget: usize, max_entries: usize, class_slots: usize) -> Self {
        Cache {
            classes: core::array::from_fn(|_| CachePadded::new(Class::new())),
            nonempty: CachePadded::new([AtomicU64::new(0), AtomicU64::new(0)]),
            usage: CachePadded::new(AtomicUsize::new(0)),
            stashes: core::array::from_fn(|_| CachePadded::new(Stash::new())),
            by_start: core::array::from_fn(|_| AtomicU32::new(0)),
            by_end: core::array::from_fn(|_| AtomicU32::new(0)),
            budget: AtomicUsize::new(budget),
            max_entries: AtomicUsize::new(max_entries),
            class_slots: AtomicUsize::new(class_slots.min(SLOTS)),
        }
    }

    /// An empty cache with the given limits.
    #[cfg(not(loom))]
    pub const fn new(budget: usize, max_entries: usize, class_slots: usize) -> Self {
        Cache {
            classes: [const { CachePadded::new(Class::new()) }; NCLASS],
            nonempty: CachePadded::new([const { AtomicU64::new(0) }; 2]),
            usage: CachePadded::new(AtomicUsize::new(0)),
            stashes: [const { CachePadded::new(Stash::new()) }; STASHES],
            by_start: [const { AtomicU32::new(0) }; EDGES],
            by_end: [const { AtomicU32::new(0) }; EDGES],
            budget: AtomicUsize::new(budget),
            max_entries: AtomicUsize::new(max_entries),
            class_slots: AtomicUsize::new(if class_slots > SLOTS { SLOTS } else { class_slots }),
        }
    }

    /// Changes the limits (used once, when the configuration has been read).
    pub fn set_limits(&self, budget: usize, max_entries: usize, class_slots: usize) {
        self.budget.store(budget, Ordering::Relaxed);
        self.max_entries.store(max_entries, Ordering::Relaxed);
        self.class_slots.store(class_slots.min(SLOTS), Ordering::Relaxed);
    }

    /// Bytes currently cached or reserved (the stashes' credit included).
    pub fn cached_bytes(&self) -> usize {
        (self.usage.load(Ordering::Relaxed) >> ENTRY_BITS) << PAGE_SHIFT
    }

    /// Number of cached mappings (reserved entries and the stashes' credit included).
    pub fn cached_entries(&self) -> usize {
        self.usage.load(Ordering::Relaxed) & ENTRY_MASK
    }

    /// Mappings and bytes held in entries: [`Cache::cached_entries`] and
    /// [`Cache::cached_bytes`] less the stashes' credit. Reads every stash (for reports
    /// and tests, not for the allocation paths).
    pub fn held(&self) -> (usize, usize) {
        let credit = self.stashes.iter().fold(0usize, |t, st| t.wrapping_add(st.credit.load(Ordering::Relaxed)));
        let u = self.usage.load(Ordering::Relaxed).wrapping_sub(credit);
        (u & ENTRY_MASK, (u >> ENTRY_BITS) << PAGE_SHIFT)
    }

    /// The configured byte budget.
    pub fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    /// Whether a mapping of `len` bytes could be cached at all.
    pub fn cacheable(&self, len: usize) -> bool {
        len != 0
            && len & (PAGE - 1) == 0
            && len >> PAGE_SHIFT <= MAX_PAGES
            && class_of(len >> PAGE_SHIFT) < NCLASS
            && len <= self.budget.load(Ordering::Relaxed)
            && self.class_slots.load(Ordering::Relaxed) != 0
            && self.max_entries.load(Ordering::Relaxed) != 0
    }

    /// Takes a cached mapping whose length lies in `[min_len, max_len]`, searching the
    /// classes from small to large (or large to small with `largest_first`).
    /// The caller then owns the returned `(base, len)` exclusively.
    pub fn take(&self, min_len: usize, max_len: usize, largest_first: bool) -> Option<(usize, usize)> {
        if min_len < PAGE || min_len > max_len {
            return None;
        }
        let lo = class_of(min_len >> PAGE_SHIFT);
        if lo >= NCLASS {
            return None;
        }
        let hi = class_of(max_len >> PAGE_SHIFT).min(NCLASS - 1);
        let mut step = 0;
        while lo + step <= hi {
            let c = if largest_first { hi - step } else { lo + step };
            step += 1;
            let class = &self.classes[c];
            let mut occ = class.occ.load(Ordering::Acquire);
            while occ != 0 {
                let i = occ.trailing_zeros() as usize;
                occ &= occ - 1;
                let slot = &class.slots[i];
                let w = slot.load(Ordering::Acquire);
                if w == 0 {
                    continue;
                }
                let (base, len) = decode(w);
                if len < min_len || len > max_len {
                    continue;
                }
                if slot.compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    self.forget(c, i, len);
                    return Some((base, len));
                }
            }
        }
        None
    }

    /// Takes a cached mapping that touches `[base, base + len)`: one that ends at `base`
    /// or starts at `base + len`. The caller then owns it and can merge the two ranges,
    /// which is how freed neighbours coalesce back into one block (like a heap's free).
    ///
    /// The edge hints find a neighbour in O(1); every entry is scanned only while the
    /// cache holds at most [`SCAN_ENTRIES`] (a full scan per `free` reads slot lines that
    /// other threads write, which was a quarter of the time of 2-thread churn).
    ///
    /// Neighbours are looked for in stash `stash` (the caller's) and in the shared
    /// classes, never in other threads' stashes: merging with another thread's stashed
    /// tail would take memory from under that thread, which then grows fresh pages.
    pub fn take_adjacent(&self, stash: usize, base: usize, len: usize) -> Option<(usize, usize)> {
        let end = base.checked_add(len)?;
        if let Some(st) = self.stashes.get(stash) {
            for slot in &st.slots {
                let w = slot.load(Ordering::Acquire);
                let (b, l) = decode(w);
                if w != 0
                    && (b.wrapping_add(l) == base || b == end)
                    && slot.compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                {
                    self.keep_credit(st, l);
                    return Some((b, l));
                }
            }
        }
        for hint in [&self.by_end[edge(base)], &self.by_start[edge(end)]] {
            let Some(at) = (hint.load(Ordering::Relaxed) as usize).checked_sub(1).filter(|&a| a < NCLASS * SLOTS)
            else {
                continue;
            };
            let (c, i) = (at / SLOTS, at % SLOTS);
            let slot = &self.classes[c].slots[i];
            let w = slot.load(Ordering::Acquire);
            let (b, l) = decode(w);
            if w != 0
                && (b.wrapping_add(l) == base || b == end)
                && slot.compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                self.forget(c, i, l);
                return Some((b, l));
            }
        }
        if self.cached_entries() > SCAN_ENTRIES {
            return None;
        }
        for (wi, word) in self.nonempty.iter().enumerate() {
            let mut cls = word.load(Ordering::Acquire);
            while cls != 0 {
                let c = wi * 64 + cls.trailing_zeros() as usize;
                cls &= cls - 1;
                let class = &self.classes[c];
                let mut occ = class.occ.load(Ordering::Acquire);
                while occ != 0 {
                    let i = occ.trailing_zeros() as usize;
                    occ &= occ - 1;
                    let slot = &class.slots[i];
                    let w = slot.load(Ordering::Acquire);
                    if w == 0 {
                        continue;
                    }
                    let (b, l) = decode(w);
                    if (b.wrapping_add(l) == base || b == end)
                        && slot.compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                    {
                        self.forget(c, i, l);
                        return Some((b, l));
                    }
                }
            }
        }
        None
    }

    /// Takes from stash `stash` (below [`STASHES`]) the smallest entry with a length in
    /// `[min_len, max_len]` (the largest with `largest`). Reusing what this thread freed
    /// keeps its hot pages (TLB entries, cache lines) in use, as a heap's per-thread arena
    /// does, and touches no line another thread writes.
    pub fn stash_take(&self, stash: usize, min_len: usize, max_len: usize, largest: bool) -> Option<(usize, usize)> {
        let st = self.stashes.get(stash)?;
        for _ in 0..4 {
            let mut best: Option<(usize, usize)> = None; // (slot, word)
            for (i, slot) in st.slots.iter().enumerate() {
                let w = slot.load(Ordering::Acquire);
                let l = decode(w).1;
                if w == 0 || l < min_len || l > max_len {
                    continue;
                }
                let better = |bw: usize| if largest { l > decode(bw).1 } else { l < decode(bw).1 };
                if best.is_none_or(|(_, bw)| better(bw)) {
                    best = Some((i, w));
                }
            }
            let (i, w) = best?;
            if st.slots[i].compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                self.keep_credit(st, decode(w).1);
                return Some(decode(w));
            }
        }
        None
    }

    /// Takes the best entry of any stash with a length in `[min_len, max_len]` (smallest,
    /// or largest with `largest`): the slow path before mapping fresh pages, so that
    /// what other threads stashed is not left idle while this one faults new memory.
    /// Reads every stash's slot line (512 words).
    pub fn take_stashed(&self, min_len: usize, max_len: usize, largest: bool) -> Option<(usize, usize)> {
        for _ in 0..4 {
            let mut best: Option<(usize, usize, usize)> = None; // (stash, slot, word)
            for (s, st) in self.stashes.iter().enumerate() {
                for (i, slot) in st.slots.iter().enumerate() {
                    let w = slot.load(Ordering::Relaxed);
                    let l = decode(w).1;
                    if w == 0 || l < min_len || l > max_len {
                        continue;
                    }
                    let better = |bw: usize| if largest { l > decode(bw).1 } else { l < decode(bw).1 };
                    if best.is_none_or(|(_, _, bw)| better(bw)) {
                        best = Some((s, i, w));
                    }
                }
            }
            let (s, i, w) = best?;
            if self.stashes[s].slots[i].compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                self.unreserve(decode(w).1);
                return Some(decode(w));
            }
        }
        None
    }

    /// Offers a mapping to stash `stash`; like [`Cache::put`] otherwise. A full stash
    /// moves its oldest entry to the shared size classes first.
    pub fn stash_put(&self, stash: usize, base: usize, len: usize, release: &mut impl FnMut(usize, usize)) -> bool {
        let Some(st) = self.stashes.get(stash) else {
            return self.put(base, len, release);
        };
        if !self.acceptable(base, len) || !(self.use_credit(st, len) || self.reserve(len, release)) {
            return false;
        }
        let word = encode(base, len);
        for _ in 0..4 {
            for (slot, stamp_of) in st.slots.iter().zip(st.stamps.iter()) {
                if slot.load(Ordering::Relaxed) != 0 {
                    continue;
                }
                stamp_of.store(st.seq.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
                if slot.compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    return true;
                }
            }
            // Full: the oldest entry goes to the shared classes (or is released).
            let oldest = (0..STASH_SLOTS).min_by_key(|&i| st.stamps[i].load(Ordering::Relaxed)).unwrap_or(0);
            let w = st.slots[oldest].load(Ordering::Acquire);
            if w != 0 && st.slots[oldest].compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                let (b, l) = decode(w);
                self.unreserve(l);
                if !self.put(b, l, release) {
                    release(b, l);
                }
            }
        }
        self.unreserve(len);
        false
    }

    /// Offers a mapping to the cache. Returns `true` if the cache took ownership; on
    /// `false` the caller still owns `(base, len)` and must release it. Entries evicted
    /// to make room are passed to `release`.
    pub fn put(&self, base: usize, len: usize, release: &mut impl FnMut(usize, usize)) -> bool {
        if !self.acceptable(base, len) || !self.reserve(len, release) {
            return false;
        }
        let c = class_of(len >> PAGE_SHIFT);
        let class = &self.classes[c];
        let limit = self.class_slots.load(Ordering::Relaxed);
        let word = encode(base, len);
        for _ in 0..4 {
            let stamp = stamp();
            for (i, (slot, st)) in class.slots.iter().zip(class.stamps.iter()).take(limit).enumerate() {
                if slot.load(Ordering::Relaxed) != 0 {
                    continue;
                }
                st.store(stamp, Ordering::Relaxed);
                if slot.compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    self.mark(c, i);
                    let at = (c * SLOTS + i) as u32 + 1;
                    self.by_start[edge(base)].store(at, Ordering::Relaxed);
                    self.by_end[edge(base + len)].store(at, Ordering::Relaxed);
                    return true;
                }
            }
            // The class is full: release its oldest entry and try again.
            self.evict_oldest(c..c + 1, release);
        }
        self.unreserve(len);
        false
    }

    /// Whether `(base, len)` can be encoded in a slot word and cached at all.
    fn acceptable(&self, base: usize, len: usize) -> bool {
        base & (PAGE - 1) == 0 && base >> (ADDR_BITS + PAGE_SHIFT) == 0 && self.cacheable(len)
    }

    /// Releases every cached mapping; returns the number of bytes released.
    pub fn drain(&self, release: &mut impl FnMut(usize, usize)) -> usize {
        let mut total = 0usize;
        // Every slot, not only the hinted ones: a `put` may be between its CAS and its mark.
        for (c, class) in self.classes.iter().enumerate() {
            for (i, slot) in class.slots.iter().enumerate() {
                let w = slot.swap(0, Ordering::AcqRel);
                if w != 0 {
                    let (base, len) = decode(w);
                    release(base, len);
                    self.forget(c, i, len);
                    total = total.wrapping_add(len);
                }
            }
        }
        for st in &self.stashes {
            for slot in &st.slots {
                let w = slot.swap(0, Ordering::AcqRel);
                if w != 0 {
                    let (base, len) = decode(w);
                    release(base, len);
                    self.unreserve(len);
                    total = total.wrapping_add(len);
                }
            }
        }
        self.reclaim_credit();
        total
    }

    /// Returns every stash's credit to the shared usage word.
    fn reclaim_credit(&self) {
        for st in &self.stashes {
            if st.credit.load(Ordering::Relaxed) != 0 {
                let c = st.credit.swap(0, Ordering::Relaxed);
                self.usage.fetch_sub(c, Ordering::Relaxed);
            }
        }
    }

    /// Most credit one stash keeps: 1/128 of the budget and of the entry cap (with 64
    /// stashes, at most half of either idles as credit; `reserve` reclaims it when full).
    fn credit_cap(&self) -> usize {
        let pages = (self.budget.load(Ordering::Relaxed) >> PAGE_SHIFT) / (2 * STASHES);
        let entries = (self.max_entries.load(Ordering::Relaxed) / (2 * STASHES)).max(1);
        (pages.min(MAX_PAGES) << ENTRY_BITS) | entries.min(ENTRY_MASK)
    }

    /// Pays for a put of `len` bytes into `st` from its credit, if that covers it.
    fn use_credit(&self, st: &Stash, len: usize) -> bool {
        let (pages, add) = (len >> PAGE_SHIFT, units(len));
        st.credit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c >> ENTRY_BITS >= pages && c & ENTRY_MASK >= 1).then(|| c - add)
            })
            .is_ok()
    }

    /// The owner of `st` claimed an entry of `len` bytes from it: its reservation stays
    /// as the stash's credit while under the cap, else goes back to the usage word.
    fn keep_credit(&self, st: &Stash, len: usize) {
        let (add, cap) = (units(len), self.credit_cap());
        let kept = st.credit.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
            let n = c.checked_add(add)?;
            (n >> ENTRY_BITS <= cap >> ENTRY_BITS && n & ENTRY_MASK <= cap & ENTRY_MASK).then_some(n)
        });
        if kept.is_err() {
            self.unreserve(len);
        }
    }

    /// Reserves budget and an entry for `len` bytes, evicting the oldest entries
    /// while over a limit. Gives up (returning `false`) if nothing can be evicted.
    fn reserve(&self, len: usize, release: &mut impl FnMut(usize, usize)) -> bool {
        let budget = self.budget.load(Ordering::Relaxed);
        let max_entries = self.max_entries.load(Ordering::Relaxed);
        let (mut evictions, mut reclaimed) = (0, false);
        let add = units(len);
        loop {
            let fits = self
                .usage
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                    let entries = u & ((1 << ENTRY_BITS) - 1);
                    let bytes = ((u >> ENTRY_BITS) << PAGE_SHIFT).checked_add(len)?;
                    (entries < max_entries && bytes <= budget).then(|| u.wrapping_add(add))
                })
                .is_ok();
            if fits {
                return true;
            }
            if !reclaimed {
                reclaimed = true;
                self.reclaim_credit(); // idle reservations go before any entry
                continue;
            }
            evictions += 1;
            if evictions > 64 || !self.evict_oldest(0..NCLASS, release) {
                return false;
            }
        }
    }

    fn unreserve(&self, len: usize) {
        self.usage.fetch_sub(units(len), Ordering::Relaxed);
    }

    /// Bookkeeping after slot `i` of class `c` was claimed (its word swapped to 0 by us).
    fn forget(&self, c: usize, i: usize, len: usize) {
        self.unmark(c, i);
        self.unreserve(len);
    }

    /// Sets the hint bits after a `put` stored an entry in slot `i` of class `c`.
    fn mark(&self, c: usize, i: usize) {
        let old = self.classes[c].occ.fetch_or(1 << i, Ordering::AcqRel);
        if old == 0 {
            self.nonempty[c / 64].fetch_or(1 << (c % 64), Ordering::AcqRel);
        }
    }

    /// Clears the hint bits after slot `i` of class `c` was emptied, then re-checks: a
    /// `put` into the same slot (or class) may have marked it between our claim and our
    /// clear. Either its mark comes after our clear in the mask's modification order (the
    /// bit stays set), or our clear reads from its mark (AcqRel), so our re-load sees its
    /// entry and we set the bit again. Hence every entry is hinted once its `put` returns.
    fn unmark(&self, c: usize, i: usize) {
        let class = &self.classes[c];
        let bit = 1u32 << i;
        let left = class.occ.fetch_and(!bit, Ordering::AcqRel) & !bit;
        if class.slots[i].load(Ordering::Acquire) != 0 {
            class.occ.fetch_or(bit, Ordering::AcqRel);
            return;
        }
        if left == 0 {
            let cb = 1u64 << (c % 64);
            self.nonempty[c / 64].fetch_and(!cb, Ordering::AcqRel);
            if class.occ.load(Ordering::Acquire) != 0 {
                self.nonempty[c / 64].fetch_or(cb, Ordering::AcqRel);
            }
        }
    }

    /// Claims and releases the entry with the smallest stamp among `classes`.
    /// Returns `false` if those classes held nothing.
    fn evict_oldest(&self, classes: core::ops::Range<usize>, release: &mut impl FnMut(usize, usize)) -> bool {
        for _ in 0..8 {
            let mut best: Option<(usize, usize, usize, u64)> = None; // (class, slot, word, stamp)
            for c in classes.clone() {
                let class = &self.classes[c];
                for (i, (slot, st)) in class.slots.iter().zip(class.stamps.iter()).enumerate() {
                    let w = slot.load(Ordering::Relaxed);
                    if w == 0 {
                        continue;
                    }
                    let s = st.load(Ordering::Relaxed);
                    if best.is_none_or(|b| s < b.3) {
                        best = Some((c, i, w, s));
                    }
                }
            }
            let Some((c, i, w, _)) = best else {
                return false;
            };
            let class = &self.classes[c];
            if class.slots[i].compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                let (base, len) = decode(w);
                release(base, len);
                self.forget(c, i, len);
                return true;
            }
        }
        // Lost every race; another thread is making progress, so let the caller move on.
        true
    }
}

#[cfg(all(test, loom))]
#[path = "cache_loom.rs"]
mod loom_tests;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::alloc::{Layout, alloc, dealloc};
    use std::sync::atomic::AtomicIsize;

    static LIVE: AtomicIsize = AtomicIsize::new(0);

    fn get(len: usize) -> usize {
        LIVE.fetch_add(1, Ordering::SeqCst);
        // SAFETY: non-zero size, valid page alignment.
        let p = unsafe { alloc(Layout::from_size_align(len, PAGE).unwrap()) };
        assert!(!p.is_null());
        p as usize
    }

    fn rel(base: usize, len: usize) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: every range the cache hands back was allocated by `get` with this layout.
        unsafe { dealloc(base as *mut u8, Layout::from_size_align(len, PAGE).unwrap()) };
    }

    #[test]
    fn classes_are_monotonic_and_tight() {
        let mut prev = 0;
        for pages in 1..(1usize << 16) {
            let c = class_of(pages);
            assert!(c == prev || c == prev + 1, "pages {pages}");
            prev = c;
        }
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(4), 3);
        assert!(class_of((1 << 21) - 1) < NCLASS);
        assert!(class_of(1 << 21) >= NCLASS);
        // Four classes per doubling above 4 pages.
        assert_eq!(class_of(64) + 4, class_of(128));
    }

    #[test]
    fn encode_roundtrip() {
        let base = 0x7fff_1234_5000usize;
        let len = 48 << 20;
        assert_eq!(decode(encode(base, len)), (base, len));
        assert_ne!(encode(base, len), 0);
    }

    #[test]
    fn best_fit_and_grow_candidates() {
        let cache = Cache::new(1 << 30, 1024, SLOTS);
        let mut r = rel;
        for mib in [1usize, 4, 16] {
            let len = mib << 20;
            assert!(cache.put(get(len), len, &mut r));
        }
        assert_eq!(cache.cached_bytes(), 21 << 20);
        // Nothing in [5 MiB, 10 MiB].
        assert!(cache.take(5 << 20, 10 << 20, false).is_none());
        // Smallest fit above 3 MiB is the 4 MiB one.
        let (b, l) = cache.take(3 << 20, 6 << 20, false).unwrap();
        assert_eq!(l, 4 << 20);
        rel(b, l);
        // Largest below 32 MiB first.
        let (b, l) = cache.take(1 << 20, 32 << 20, true).unwrap();
        assert_eq!(l, 16 << 20);
        rel(b, l);
        assert_eq!(cache.drain(&mut r), 1 << 20);
        assert_eq!(cache.cached_bytes(), 0);
        assert_eq!(cache.cached_entries(), 0);
    }

    #[test]
    fn adjacent_neighbours_are_found() {
        let cache = Cache::new(1 << 30, 1024, SLOTS);
        let mut r = rel;
        let big = get(4 << 20);
        // Pretend the block is three cached neighbours: [0,1) [1,3) and a far one.
        let far = get(1 << 20);
        assert!(cache.put(big, 1 << 20, &mut r));
        assert!(cache.put(big + (3 << 20), 1 << 20, &mut r));
        assert!(cache.put(far, 1 << 20, &mut r));
        // The middle part [1, 3) MiB touches both neighbours, never the far block.
        let mut got = Vec::new();
        while let Some(x) = cache.take_adjacent(0, big + (1 << 20), 2 << 20) {
            got.push(x);
        }
        got.sort();
        assert_eq!(got, vec![(big, 1 << 20), (big + (3 << 20), 1 << 20)]);
        assert_eq!(cache.cached_entries(), 1);
        assert_eq!(cache.take(1 << 20, usize::MAX, false), Some((far, 1 << 20)));
        rel(far, 1 << 20);
        rel(big, 4 << 20);
        assert_eq!(cache.take_adjacent(0, usize::MAX - 4096, 8192), None);
    }

    #[test]
    fn a_thread_reuses_its_own_stash_first_and_others_only_on_the_slow_path() {
        let cache = Cache::new(1 << 30, 1024, SLOTS);
        let mut r = rel;
        let (mine, theirs) = (get(2 << 20), get(4 << 20));
        assert!(cache.stash_put(3, mine, 2 << 20, &mut r));
        assert!(cache.stash_put(7, theirs, 4 << 20, &mut r));
        assert_eq!((cache.cached_entries(), cache.cached_bytes()), (2, 6 << 20));
        // Neither the shared classes nor another stash's first level see a stashed entry.
        assert_eq!(cache.take(1 << 20, usize::MAX, false), None);
        assert_eq!(cache.stash_take(5, 1 << 20, usize::MAX, false), None);
        // The owner's stash: smallest fit, or the largest below a bound (to grow).
        assert_eq!(cache.stash_take(3, 3 << 20, usize::MAX, false), None);
        assert_eq!(cache.stash_take(3, PAGE, 3 << 20, true), Some((mine, 2 << 20)));
        // The slow path looks into every stash.
        assert_eq!(cache.take_stashed(3 << 20, usize::MAX, false), Some((theirs, 4 << 20)));
        assert_eq!(cache.held(), (0, 0));
        rel(mine, 2 << 20);
        rel(theirs, 4 << 20);
        // An out-of-range stash index falls back to the shared classes.
        let b = get(1 << 20);
        assert!(cache.stash_put(STASHES, b, 1 << 20, &mut r));
        assert_eq!(cache.take(1 << 20, 1 << 20, false), Some((b, 1 << 20)));
        rel(b, 1 << 20);
    }

    #[test]
    fn a_full_stash_moves_its_oldest_entry_to_the_shared_classes() {
        let cache = Cache::new(1 << 30, 1024, SLOTS);
        let mut r = rel;
        let blocks: Vec<usize> = (0..=STASH_SLOTS).map(|_| get(1 << 20)).collect();
        for &b in &blocks {
            assert!(cache.stash_put(0, b, 1 << 20, &mut r));
        }
        assert_eq!(cache.cached_entries(), STASH_SLOTS + 1);
        assert_eq!(cache.take(1 << 20, 1 << 20, false), Some((blocks[0], 1 << 20)), "the oldest moved");
        rel(blocks[0], 1 << 20);
        assert_eq!(cache.drain(&mut r), STASH_SLOTS << 20, "drain empties the stashes too");
        assert_eq!((cache.cached_entries(), cache.cached_bytes()), (0, 0));
        assert_eq!(cache.stash_take(0, PAGE, usize::MAX, false), None);
    }

    #[test]
    fn neighbours_merge_from_the_own_stash_and_the_shared_classes_never_another_stash() {
        let cache = Cache::new(1 << 30, 1024, SLOTS);
        let mut r = rel;
        let big = get(4 << 20);
        // [0,1) in stash 1 (ours), [3,4) shared, and [1,2)'s other neighbour [2,3) is
        // held in stash 2 (another thread's).
        assert!(cache.stash_put(1, big, 1 << 20, &mut r));
        assert!(cache.put(big + (3 << 20), 1 << 20, &mut r));
        assert!(cache.stash_put(2, big + (2 << 20), 1 << 20, &mut r));
        assert_eq!(cache.take_adjacent(1, big + (1 << 20), 1 << 20), Some((big, 1 << 20)));
        assert_eq!(cache.take_adjacent(1, big + (1 << 20), 1 << 20), None, "stash 2's entry stays");
        assert_eq!(cache.take_adjacent(1, big + (2 << 20), 1 << 20), Some((big + (3 << 20), 1 << 20)));
        assert_eq!(cache.take_adjacent(2, big + (1 << 20), 1 << 20), Some((big + (2 << 20), 1 << 20)));
        assert_eq!(cache.held(), (0, 0));
        rel(big, 4 << 20);
    }

    #[test]
    fn an_owner_keeps_its_claims_as_credit_for_its_next_put_within_the_budget() {
        // Budget 8 MiB, so a stash keeps at most 8 MiB / 128 = 64 KiB and 8 entries' worth.
        let cache = Cache::new(8 << 20, 1024, SLOTS);
        let mut r = rel;
        let (a, b) = (get(64 << 10), get(128 << 10));
        assert!(cache.stash_put(0, a, 64 << 10, &mut r));
        assert_eq!(cache.stash_take(0, PAGE, usize::MAX, false), Some((a, 64 << 10)));
        // The claim stays reserved as stash 0's credit: counted against the budget, not held.
        assert_eq!((cache.cached_entries(), cache.cached_bytes()), (1, 64 << 10));
        assert_eq!(cache.held(), (0, 0));
        // The next put of up to that size is paid from the credit.
        assert!(cache.stash_put(0, a, 64 << 10, &mut r));
        assert_eq!((cache.cached_entries(), cache.cached_bytes()), (1, 64 << 10));
        assert_eq!(cache.held(), (1, 64 << 10));
        // A claim beyond the cap goes back to the shared word at once.
        assert!(cache.stash_put(0, b, 128 << 10, &mut r));
        assert_eq!(cache.stash_take(0, 128 << 10, usize::MAX, false), Some((b, 128 << 10)));
        assert_eq!((cache.cached_entries(), cache.cached_bytes()), (1, 64 << 10));
        // Another thread's claim from this stash returns the budget to the shared word.
        assert_eq!(cache.take_stashed(PAGE, usize::MAX, false), Some((a, 64 << 10)));
        assert_eq!((cache.cached_entries(), cache.cached_bytes()), (0, 0));
        // Credit never blocks the budget: a full budget reclaims it before refusing.
        assert!(cache.stash_put(0, a, 64 << 10, &mut r));
        assert_eq!(cache.stash_take(0, PAGE, usize::MAX, false), Some((a, 64 << 10)));
        let big = get(8 << 20);
        assert!(cache.put(big, 8 << 20, &mut r), "the 64 KiB of credit gave way");
        assert_eq!(cache.held(), (1, 8 << 20));
        assert_eq!(cache.drain(&mut r), 8 << 20);
        assert_eq!((cache.cached_entries(), cache.cached_bytes()), (0, 0));
        rel(a, 64 << 10);
        rel(b, 128 << 10);
    }

    #[test]
    fn the_edge_hints_find_shared_neighbours_among_many_entries() {
        // More entries than the full scan allows: only the hints can find the neighbour.
        let cache = Cache::new(1 << 30, 1024, SLOTS);
        let mut r = rel;
        let others: Vec<usize> = (0..2 * SCAN_ENTRIES).map(|_| get(PAGE)).collect();
        for &b in &others {
            assert!(cache.put(b, PAGE, &mut r));
        }
        let big = get(3 << 20);
        assert!(cache.put(big + (2 << 20), 1 << 20, &mut r));
        assert!(cache.put(big, 1 << 20, &mut r));
        let mut got = Vec::new();
        while let Some(x) = cache.take_adjacent(0, big + (1 << 20), 1 << 20) {
            got.push(x);
        }
        got.sort();
        assert_eq!(got, vec![(big, 1 << 20), (big + (2 << 20), 1 << 20)]);
        assert_eq!(cache.drain(&mut r), 2 * SCAN_ENTRIES * PAGE);
        rel(big, 3 << 20);
    }

    #[test]
    fn limits_evict_oldest() {
        let mut r = rel;
        // Byte budget: 3 x 1 MiB fit, the 4th evicts the oldest.
        let cache = Cache::new(3 << 20, 1024, SLOTS);
        let blocks: Vec<usize> = (0..4).map(|_| get(1 << 20)).collect();
        for &b in &blocks {
            assert!(cache.put(b, 1 << 20, &mut r));
        }
        assert_eq!(cache.cached_bytes(), 3 << 20);
        let mut left = Vec::new();
        while let Some((b, _)) = cache.take(1 << 20, 1 << 20, false) {
            left.push(b);
        }
        left.sort();
        let mut want = blocks[1..].to_vec();
        want.sort();
        assert_eq!(left, want, "the oldest block was released");
        for b in left {
            rel(b, 1 << 20);
        }
        // Too big for the budget: refused, caller keeps it.
        let big = get(4 << 20);
        assert!(!cache.put(big, 4 << 20, &mut r));
        rel(big, 4 << 20);
        // Per-class limit.
        let cache = Cache::new(1 << 30, 1024, 2);
        for _ in 0..3 {
            assert!(cache.put(get(1 << 20), 1 << 20, &mut r));
        }
        assert_eq!(cache.cached_entries(), 2);
        cache.drain(&mut r);
        // Mapping-count limit.
        let cache = Cache::new(1 << 30, 2, SLOTS);
        for mib in [1usize, 2, 3] {
            assert!(cache.put(get(mib << 20), mib << 20, &mut r));
        }
        assert_eq!(cache.cached_entries(), 2);
        assert_eq!(cache.cached_bytes(), 5 << 20);
        cache.drain(&mut r);
        // Disabled cache refuses everything.
        let cache = Cache::new(1 << 30, 0, SLOTS);
        let b = get(1 << 20);
        assert!(!cache.put(b, 1 << 20, &mut r));
        rel(b, 1 << 20);
        assert!(!cache.put(0x1001, 1 << 20, &mut r), "unaligned base refused");
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Model test: threads take, stamp every page with their own token, keep a few
    /// blocks live, verify the stamps and put the blocks back. Two owners of one block,
    /// a wrong length or a use-after-release shows up as a wrong stamp; leaks and double
    /// releases show up in the live-allocation count.
    #[test]
    fn model_many_threads() {
        static CACHE: Cache = Cache::new(24 << 20, 40, 6);
        const THREADS: u64 = 8;
        let iters = if cfg!(miri) { 30 } else { 3000 };
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t + 1) * 0x1234_5678_9abc));
                    let mut live: Vec<(usize, usize, u64)> = Vec::new();
                    let mut hits = 0u64;
                    let mut r = mrel;
                    for i in 0..iters {
                        let need = ((1 + rng.next() % 256) as usize) * PAGE;
                        let (base, len) = match cache_take(&CACHE, need, rng.next() % 3 == 0) {
                            Some(x) => {
                                hits += 1;
                                x
                            }
                            None => (mget(need), need),
                        };
                        assert!(len >= need && len <= 2 * need);
                        let token = (t << 48) | i as u64;
                        for off in (0..len).step_by(PAGE) {
                            // SAFETY: we own [base, base + len) exclusively.
                            unsafe { ((base + off) as *mut u64).write(token) };
                        }
                        live.push((base, len, token));
                        if live.len() > 3 || rng.next() % 2 == 0 {
                            let k = (rng.next() as usize) % live.len();
                            let (b, l, tok) = live.swap_remove(k);
                            for off in (0..l).step_by(PAGE) {
                                // SAFETY: still owned by this thread.
                                let v = unsafe { ((b + off) as *const u64).read() };
                                assert_eq!(v, tok, "block shared between owners");
                            }
                            if !CACHE.put(b, l, &mut r) {
                                mrel(b, l);
                            }
                            assert!(CACHE.cached_bytes() <= 24 << 20);
                        }
                    }
                    for (b, l, _) in live {
                        if !CACHE.put(b, l, &mut r) {
                            mrel(b, l);
                        }
                    }
                    hits
                })
            })
            .collect();
        let hits: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(hits > 0);
        assert!(CACHE.cached_entries() <= 40);
        CACHE.drain(&mut mrel);
        assert_eq!(CACHE.cached_bytes(), 0);
        assert_eq!(MLIVE.load(Ordering::SeqCst), 0, "leak or double release");
    }

    static MLIVE: AtomicIsize = AtomicIsize::new(0);

    fn mget(len: usize) -> usize {
        let b = get(len);
        LIVE.fetch_sub(1, Ordering::SeqCst);
        MLIVE.fetch_add(1, Ordering::SeqCst);
        b
    }

    fn mrel(base: usize, len: usize) {
        MLIVE.fetch_sub(1, Ordering::SeqCst);
        LIVE.fetch_add(1, Ordering::SeqCst);
        rel(base, len);
    }

    fn cache_take(c: &Cache, need: usize, grow_candidate: bool) -> Option<(usize, usize)> {
        if grow_candidate {
            // Exercise the descending search too; the model then needs an exact-fit length.
            c.take(need, need, true)
        } else {
            c.take(need, 2 * need, false)
        }
    }
}
