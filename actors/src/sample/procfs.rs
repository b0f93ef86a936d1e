//! Per-process readings from the proc file system (`/proc/<pid>/stat` and `/proc/<pid>/io`).
//!
//! Sampling cost is a feature: a sample reads two small files per process of a step, into one
//! reused buffer, and parses them without allocating (except the short `comm`). The root is a
//! parameter so tests read recorded trees from `tests/fixtures/proc/`. A pid that vanishes
//! between listing and reading is skipped (`Ok(None)`), never an error: processes end all the time.

use super::SampleError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What one process contributes to its step's sample. Times are clock ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessReading {
    pub pid: u32,
    pub ppid: u32,
    /// Kernel command name (at most 15 bytes).
    pub comm: String,
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
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid: u32 = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    // Fields after ") " start with field 3 (state); index i here is field i + 3.
    let mut fields = text[close + 1..].split_ascii_whitespace();
    let mut next = |skip: usize| -> Option<u64> { fields.nth(skip)?.parse().ok() };
    let ppid = next(1)?; // field 4
    let minflt = next(5)?; // field 10
    let cminflt = next(0)?;
    let majflt = next(0)?;
    let cmajflt = next(0)?;
    let utime = next(0)?; // field 14
    let stime = next(0)?;
    let cutime = next(0)?;
    let cstime = next(0)?; // field 17
    let threads = next(2)?; // field 20
    let rss = next(3)?; // field 24
    Some(ProcessReading {
        pid,
        ppid: u32::try_from(ppid).ok()?,
        comm,
        utime_ticks: utime,
        stime_ticks: stime,
        cutime_ticks: cutime,
        cstime_ticks: cstime,
        minor_faults: minflt + cminflt,
        major_faults: majflt + cmajflt,
        threads: u32::try_from(threads).unwrap_or(u32::MAX),
        rss_pages: rss,
        read_bytes: 0,
        write_bytes: 0,
    })
}

/// Parses `/proc/<pid>/io` into (`rchar`, `wchar`).
pub fn parse_io(text: &str) -> (u64, u64) {
    let mut rchar = 0;
    let mut wchar = 0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("rchar:") {
            rchar = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("wchar:") {
            wchar = v.trim().parse().unwrap_or(0);
        }
    }
    (rchar, wchar)
}

/// A proc file system at some root, with the host's clock tick rate and page size.
#[derive(Debug)]
pub struct ProcRoot {
    root: PathBuf,
    clk_tck: u64,
    page_kib: u64,
    buf: String,
    bytes: Vec<u8>,
    path: PathBuf,
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
            buf: String::new(),
            bytes: Vec::new(),
            path: PathBuf::new(),
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

    /// Reads one process; `Ok(None)` when it has gone (or its stat is unreadable/malformed).
    pub fn read_process(&mut self, pid: u32, with_io: bool) -> Option<ProcessReading> {
        if !self.read_file(pid, "stat") {
            return None;
        }
        let mut reading = parse_stat(&self.buf)?;
        if with_io && self.read_file(pid, "io") {
            (reading.read_bytes, reading.write_bytes) = parse_io(&self.buf);
        }
        Some(reading)
    }

    /// The command line of a process with NULs turned into spaces, if readable.
    pub fn cmdline(&mut self, pid: u32) -> Option<String> {
        if !self.read_file(pid, "cmdline") {
            return None;
        }
        Some(self.buf.trim_end_matches('\0').replace('\0', " "))
    }

    /// The environment of a process as (name, value) pairs, if readable.
    pub fn environ(&mut self, pid: u32) -> Option<Vec<(String, String)>> {
        if !self.read_file(pid, "environ") {
            return None;
        }
        Some(
            self.buf
                .split('\0')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Reads `<root>/<pid>/<name>` into the reused buffer; false when absent or unreadable.
    fn read_file(&mut self, pid: u32, name: &str) -> bool {
        use std::fmt::Write as _;
        self.path.clear();
        self.path.push(&self.root);
        let mut leaf = String::with_capacity(24);
        let _ = write!(leaf, "{pid}/{name}");
        self.path.push(leaf);
        self.bytes.clear();
        let read = std::fs::File::open(&self.path).and_then(|mut file| file.read_to_end(&mut self.bytes));
        if read.is_err() {
            return false;
        }
        self.buf.clear();
        match std::str::from_utf8(&self.bytes) {
            Ok(text) => self.buf.push_str(text),
            // comm, cmdline and environ may hold bytes that are not UTF-8: keep what decodes.
            Err(_) => self.buf.push_str(&String::from_utf8_lossy(&self.bytes)),
        }
        true
    }
}

/// CLK_TCK of this host (from sysconf, not assumed).
pub fn host_clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// Page size of this host in bytes.
pub fn host_page_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
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
    fn vanished_pid_is_none_not_an_error() {
        let mut root = ProcRoot::with_units("/nonexistent-proc", 100, 4);
        assert!(root.read_process(1, true).is_none());
    }
}
