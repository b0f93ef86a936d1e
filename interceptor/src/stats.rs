//! Counters of what the cache did, printed at exit with `TURINGWATCH_PRELOAD_STATS=1`.
//!
//! Why global relaxed atomics, bumped only when the report was asked for: they must work
//! without thread-locals, and a counter every thread bumps on every cache hit is a cache
//! line bouncing between cores (measured 2026-12-03 on 2-thread 256 KiB–4 MiB churn: the
//! counters' `lock add`s were a sixth of the preload's own time). Switched off, a bump is
//! one load of a flag that is written once at start-up.
//! The report is formatted into a stack buffer and written with `write(2)`: no stdio,
//! no allocation, so it also works from a library destructor after `exit`.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// Whether the counters count (`TURINGWATCH_PRELOAD_STATS=1`). On its own cache line, so
/// that no hot write shares it.
static COUNTING: CachePadded<AtomicBool> = CachePadded::new(AtomicBool::new(false));

/// Switches counting on or off (once, at start-up).
pub fn count(on: bool) {
    COUNTING.store(on, Ordering::Relaxed);
}

/// Whether the counters count.
pub fn counting() -> bool {
    COUNTING.load(Ordering::Relaxed)
}

/// One counter. The counters share cache lines with each other, never with the cache
/// table (which lives in its own static).
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A zero counter.
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }
    /// Adds `n` while counting is on.
    #[inline]
    pub fn add(&self, n: u64) {
        if counting() {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// All counters.
pub struct Stats {
    /// Large requests served from the cache (exact or grown with mremap).
    pub hits: Counter,
    /// Large requests that needed a fresh mmap.
    pub misses: Counter,
    /// Bytes of cached (already faulted-in) memory handed out again, counted up to the
    /// requested size; divided by the page size this estimates the page faults avoided.
    pub bytes_reused: Counter,
    /// Bytes returned to the kernel (munmap) by eviction, overflow or trim.
    pub bytes_released: Counter,
    /// Large chunks freed into the cache.
    pub cached_frees: Counter,
    /// Freed chunks merged with a cached neighbour.
    pub merges: Counter,
    /// Times the cache was released because the job's cgroup was above the high mark.
    pub pressure_releases: Counter,
    /// Bytes released by those.
    pub bytes_released_pressure: Counter,
}

impl Stats {
    /// All zero.
    pub const fn new() -> Self {
        Stats {
            hits: Counter::new(),
            misses: Counter::new(),
            bytes_reused: Counter::new(),
            bytes_released: Counter::new(),
            cached_frees: Counter::new(),
            merges: Counter::new(),
            pressure_releases: Counter::new(),
            bytes_released_pressure: Counter::new(),
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// Formats `v` in decimal into `buf`, returning the digits.
pub fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

/// A fixed-size line builder on the stack.
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    /// Empty line.
    pub const fn new() -> Self {
        Line { buf: [0; 512], len: 0 }
    }
    /// Appends bytes, truncating at capacity.
    pub fn push(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }
    /// Appends a decimal number.
    pub fn num(&mut self, v: u64) -> &mut Self {
        let mut b = [0u8; 20];
        let digits = fmt_u64(v, &mut b);
        self.push(digits)
    }
    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

/// Renders the exit report: `pid`, the counters, and the cache state (no newline: the
/// caller appends the layout and job parts).
pub fn render(line: &mut Line, pid: u64, s: &Stats, cached_bytes: u64, budget: u64, page: u64) {
    let reused = s.bytes_reused.get();
    line.push(b"turingwatch-preload[")
        .num(pid)
        .push(b"]: hits ")
        .num(s.hits.get())
        .push(b", misses ")
        .num(s.misses.get())
        .push(b", bytes reused ")
        .num(reused)
        .push(b", bytes released ")
        .num(s.bytes_released.get())
        .push(b", page faults avoided ~")
        .num(reused / page.max(1))
        .push(b", cached now ")
        .num(cached_bytes)
        .push(b" of budget ")
        .num(budget);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_u64(0, &mut b), b"0");
        assert_eq!(fmt_u64(1234567890, &mut b), b"1234567890");
        assert_eq!(fmt_u64(u64::MAX, &mut b), b"18446744073709551615");
    }

    #[test]
    fn report_line() {
        // The only test that touches the global switch: counting off, a bump is lost.
        let s = Stats::new();
        count(false);
        s.hits.add(7);
        assert_eq!(s.hits.get(), 0);
        count(true);
        s.hits.add(3);
        s.misses.add(1);
        s.bytes_reused.add(3 * 4096);
        let mut l = Line::new();
        render(&mut l, 42, &s, 8192, 1 << 30, 4096);
        let text = std::str::from_utf8(l.as_bytes()).unwrap();
        assert_eq!(
            text,
            "turingwatch-preload[42]: hits 3, misses 1, bytes reused 12288, bytes released 0, \
             page faults avoided ~3, cached now 8192 of budget 1073741824"
        );
        let mut l = Line::new();
        for _ in 0..100 {
            l.push(b"0123456789");
        }
        assert_eq!(l.as_bytes().len(), 512);
    }
}
