//! Per-process readings from the proc file system (`/proc/<pid>/stat` and `/proc/<pid>/io`).
//!
//! Sampling cost is a feature: reading a process costs three system calls per file (open, one
//! read into a reused buffer, close; std's `read_to_end` adds a `statx` and an EOF probe), the
//! path is built in a reused byte buffer, and parsing works on bytes without allocating. The
//! root is a parameter so tests read recorded trees from `tests/fixtures/proc/`. A pid that
//! vanishes between listing and reading is skipped (`None`), never an error: processes end all
//! the time. Callers that keep readings between samples ([`ProcRoot::read_process_into`]) pay
//! for the `comm` string only when it changes.

use super::SampleError;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What one process contributes to its step's sample. Times are clock ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessReading {
    pub pid: u32,
    pub ppid: u32,
    /// Kernel command name (at most 15 bytes).
    pub comm: String,
    /// Start time after boot, clock ticks: tells a reused pid from the process seen before.
    pub start_ticks: u64,
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    /// CPU time of children that exited and were waited for.
    pub cutime_ticks: u64,
    pub cstime_ticks: u64,
    /// Minor faults, own plus waited-for children.
    pub minor_faults: u64,
    /// Major faults, own plus waited-for children.
    pub major_faults: u64,
    pub threads: u32,
    pub rss_pages: u64,
    /// `rchar` from `/proc/<pid>/io`; 0 when unreadable (other users' processes when not root).
    pub read_bytes: u64,
    /// `wchar` from `/proc/<pid>/io`.
    pub write_bytes: u64,
}

/// Parses `/proc/<pid>/stat`. `comm` may hold spaces and parentheses, so it is taken between the
/// first `(` and the last `)`; the numbered fields follow. Returns `None` for malformed text.
pub fn parse_stat(text: &str) -> Option<ProcessReading> {
    let mut reading = ProcessReading::default();
    parse_stat_into(text.as_bytes(), &mut reading).then_some(reading)
}

/// [`parse_stat`] into an existing reading; `comm` is replaced only when it differs. On `false`
/// (malformed) the reading is left in an unspecified but valid state.
pub fn parse_stat_into(text: &[u8], out: &mut ProcessReading) -> bool {
    let (Some(open), Some(close)) = (text.iter().position(|&b| b == b'('), text.iter().rposition(|&b| b == b')'))
    else {
        return false;
    };
    if close < open {
        return false;
    }
    let Some(pid) = parse_u64(trim(&text[..open])).and_then(|p| u32::try_from(p).ok()) else {
        return false;
    };
    // Fields after ") " start with field 3 (state); field k is at index k - 3.
    let mut values = [0u64; 22];
    let mut fields = text[close + 1..].split(|b| b.is_ascii_whitespace()).filter(|f| !f.is_empty());
    let Some(_state) = fields.next() else {
        return false;
    };
    for value in &mut values[1..] {
        match fields.next() {
            // Negative fields (priority, nice) are never used; they parse as 0.
            Some(f) if f.first() == Some(&b'-') => *value = 0,
            Some(f) => match parse_u64(f) {
                Some(v) => *value = v,
                None => return false,
            },
            None => return false,
        }
    }
    let field = |k: usize| values[k - 3];
    let Ok(ppid) = u32::try_from(field(4)) else {
        return false;
    };
    let comm = &text[open + 1..close];
    if out.comm.as_bytes() != comm {
        out.comm = String::from_utf8_lossy(comm).into_owned();
    }
    out.pid = pid;
    out.ppid = ppid;
    out.minor_faults = field(10) + field(11);
    out.major_faults = field(12) + field(13);
    out.utime_ticks = field(14);
    out.stime_ticks = field(15);
    out.cutime_ticks = field(16);
    out.cstime_ticks = field(17);
    out.threads = u32::try_from(field(20)).unwrap_or(u32::MAX);
    out.start_ticks = field(22);
    out.rss_pages = field(24);
    true
}

/// Parses `/proc/<pid>/io` into (`rchar`, `wchar`).
pub fn parse_io(text: &str) -> (u64, u64) {
    parse_io_bytes(text.as_bytes())
}

fn parse_io_bytes(text: &[u8]) -> (u64, u64) {
    let mut rchar = 0;
    let mut wchar = 0;
    for line in text.split(|&b| b == b'\n') {
        if let Some(v) = line.strip_prefix(b"rchar:") {
            rchar = parse_u64(trim(v)).unwrap_or(0);
        } else if let Some(v) = line.strip_prefix(b"wchar:") {
            wchar = parse_u64(trim(v)).unwrap_or(0);
            break; // wchar follows rchar
        }
    }
    (rchar, wchar)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

/// A decimal number of at most 20 digits; `None` for anything else (or overflow).
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A proc file system at some root, with the host's clock tick rate and page size.
#[derive(Debug)]
pub struct ProcRoot {
    root: PathBuf,
    clk_tck: u64,
    page_kib: u64,
    /// Contents of the file read last.
    bytes: Vec<u8>,
    /// `<root>/<pid>/<name>\0`, rebuilt in place for every read.
    path: Vec<u8>,
}

impl ProcRoot {
    /// The proc tree at `root`, with the running host's CLK_TCK and page size.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcRoot::with_units(root, host_clk_tck(), host_page_bytes() / 1024)
    }

    /// The proc tree at `root` with given units (recorded trees carry the units of their host).
    pub fn with_units(root: impl Into<PathBuf>, clk_tck: u64, page_kib: u64) -> Self {
        ProcRoot {
            root: root.into(),
            clk_tck: clk_tck.max(1),
            page_kib: page_kib.max(1),
            bytes: Vec::with_capacity(4096),
            path: Vec::with_capacity(64),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Clock ticks per second.
    pub fn clk_tck(&self) -> u64 {
        self.clk_tck
    }

    /// KiB per page.
    pub fn page_kib(&self) -> u64 {
        self.page_kib
    }

    /// Every numeric entry of the root, i.e. every process.
    pub fn pids(&self) -> Result<Vec<u32>, SampleError> {
        let entries =
            std::fs::read_dir(&self.root).map_err(|source| SampleError::Read { path: self.root.clone(), source })?;
        Ok(entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
    }

    /// Reads one process; `None` when it has gone (or its stat is unreadable/malformed).
    pub fn read_process(&mut self, pid: u32, with_io: bool) -> Option<ProcessReading> {
        let mut reading = ProcessReading::default();
        self.read_process_into(pid, with_io, &mut reading).then_some(reading)
    }

    /// Reads one process into `out` (reusing its `comm`); false when it has gone. Without
    /// `with_io`, or when `io` is unreadable, the I/O counters are set to 0.
    pub fn read_process_into(&mut self, pid: u32, with_io: bool, out: &mut ProcessReading) -> bool {
        if !self.read_file(pid, b"stat") || !parse_stat_into(&self.bytes, out) {
            return false;
        }
        (out.read_bytes, out.write_bytes) =
            if with_io && self.read_file(pid, b"io") { parse_io_bytes(&self.bytes) } else { (0, 0) };
        true
    }

    /// The command line of a process, arguments joined by spaces, if readable. Read rarely (a
    /// slurmstepd's title once), so through the `procfs` crate.
    pub fn cmdline(&self, pid: u32) -> Option<String> {
        let process = procfs::process::Process::new_with_root(self.root.join(pid.to_string())).ok()?;
        Some(process.cmdline().ok()?.join(" "))
    }

    /// The environment of a process as (name, value) pairs, if readable (once per step, for its
    /// GPU allocation; through the `procfs` crate).
    pub fn environ(&self, pid: u32) -> Option<Vec<(String, String)>> {
        let process = procfs::process::Process::new_with_root(self.root.join(pid.to_string())).ok()?;
        let env = process.environ().ok()?;
        Some(
            env.into_iter()
                .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
                .collect(),
        )
    }

    /// Reads `<root>/<pid>/<name>` into the reused buffer; false when absent or unreadable.
    fn read_file(&mut self, pid: u32, name: &[u8]) -> bool {
        self.path.clear();
        self.path.extend_from_slice(self.root.as_os_str().as_bytes());
        self.path.push(b'/');
        push_decimal(&mut self.path, pid);
        self.path.push(b'/');
        self.path.extend_from_slice(name);
        self.path.push(0);
        if self.root.as_os_str().as_bytes().contains(&0) {
            return false;
        }
        // SAFETY: `path` is NUL-terminated (pushed above) and has no interior NUL (the root was
        // checked, the digits and name have none); open only reads it.
        let fd = unsafe { libc::open(self.path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return false;
        }
        self.bytes.clear();
        let ok = loop {
            if self.bytes.capacity() - self.bytes.len() < 1024 {
                self.bytes.reserve(self.bytes.capacity().max(4096));
            }
            let spare = self.bytes.capacity() - self.bytes.len();
            // SAFETY: the pointer is the start of the vector's spare capacity, valid for `spare`
            // bytes; read writes at most that many.
            let n = unsafe { libc::read(fd, self.bytes.as_mut_ptr().add(self.bytes.len()).cast(), spare) };
            if n < 0 {
                break false;
            }
            let n = n as usize;
            // SAFETY: read initialised the `n` bytes after the old length, within capacity.
            unsafe { self.bytes.set_len(self.bytes.len() + n) };
            // A proc file of one record (stat, io) arrives in one read when it fits: a short read
            // is the end (seq_file fills the buffer while there is output).
            if n == 0 || n < spare {
                break true;
            }
        };
        // SAFETY: fd is a descriptor we opened above and close exactly once.
        unsafe { libc::close(fd) };
        ok
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// CLK_TCK (USER_HZ) of this host, the unit of `stat` times and `cpuacct.stat`.
pub fn host_clk_tck() -> u64 {
    procfs::ticks_per_second().max(1)
}

/// Page size of this host in bytes.
pub fn host_page_bytes() -> u64 {
    procfs::page_size().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "31516 (sleep) S 31515 31516 31511 0 -1 4194560 97 3 1 2 5 7 11 13 20 0 1 0 1234 5849088 128 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";

    #[test]
    fn stat_fields_are_taken_by_their_numbers() {
        let r = parse_stat(STAT).unwrap();
        assert_eq!((r.pid, r.ppid, r.comm.as_str()), (31516, 31515, "sleep"));
        assert_eq!((r.minor_faults, r.major_faults), (97 + 3, 1 + 2));
        assert_eq!((r.utime_ticks, r.stime_ticks, r.cutime_ticks, r.cstime_ticks), (5, 7, 11, 13));
        assert_eq!((r.threads, r.rss_pages), (1, 128));
    }

    #[test]
    fn comm_with_spaces_and_parentheses_is_kept_whole() {
        let text = STAT.replace("(sleep)", "(a) b (c)");
        let r = parse_stat(&text).unwrap();
        assert_eq!(r.comm, "a) b (c");
        assert_eq!(r.utime_ticks, 5);
    }

    #[test]
    fn malformed_stat_is_refused() {
        assert!(parse_stat("").is_none());
        assert!(parse_stat("12 (x) S 1 2").is_none());
        assert!(parse_stat("x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22").is_none());
    }

    #[test]
    fn io_counters_are_read_by_name() {
        let io = "rchar: 6976\nwchar: 1048576\nsyscr: 12\nsyscw: 3\nread_bytes: 0\nwrite_bytes: 4096\n";
        assert_eq!(parse_io(io), (6976, 1_048_576));
        assert_eq!(parse_io("garbage"), (0, 0));
    }

    #[test]
    fn reading_into_a_kept_reading_replaces_comm_only_when_it_changed() {
        let mut r = parse_stat(STAT).unwrap();
        let before = r.comm.as_ptr();
        assert!(parse_stat_into(STAT.as_bytes(), &mut r));
        assert_eq!(r.comm.as_ptr(), before, "same comm: no new string");
        assert!(parse_stat_into(STAT.replace("(sleep)", "(python3)").as_bytes(), &mut r));
        assert_eq!((r.comm.as_str(), r.start_ticks), ("python3", 1234));
        assert!(!parse_stat_into(b"31516 (x) S 1 notanumber", &mut r));
    }

    #[test]
    fn this_process_is_read_from_the_real_proc() {
        let mut root = ProcRoot::new("/proc");
        let me = std::process::id();
        let r = root.read_process(me, true).unwrap();
        assert_eq!(r.pid, me);
        assert!(r.threads >= 1 && r.rss_pages > 0 && r.start_ticks > 0);
        assert!(root.cmdline(me).is_some_and(|c| !c.is_empty()));
        assert!(root.environ(me).is_some());
    }

    #[test]
    fn vanished_pid_is_none_not_an_error() {
        let mut root = ProcRoot::with_units("/nonexistent-proc", 100, 4);
        assert!(root.read_process(1, true).is_none());
    }
}
