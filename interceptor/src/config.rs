//! Settings from `TURINGWATCH_PRELOAD_*` environment variables and the job's cgroup.
//!
//! Why it is written this way: the configuration is read lazily from inside `malloc`
//! (or from the library constructor, whichever comes first), so it must not allocate:
//! `getenv` returns a pointer into the environment, the cgroup files are read with raw
//! `open`/`read` into stack buffers, and messages go straight to `write(2)`.
//! Invalid values are reported once (configuration is loaded once) and replaced by
//! their defaults, so a typo never stops a batch job.

use core::ffi::{CStr, c_char};

/// Default large-chunk threshold: glibc's initial `M_MMAP_THRESHOLD`.
pub const DEFAULT_THRESHOLD: usize = 128 << 10;
/// Upper bound of the default byte budget.
pub const DEFAULT_BUDGET_CAP: usize = 1 << 30;
/// Default cap on the number of cached mappings (each is at least one VMA).
pub const DEFAULT_MAX_MAPPINGS: usize = 1024;

/// The effective settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Requests of at least this many bytes become cached mmapped chunks.
    pub threshold: usize,
    /// Byte budget of the cache.
    pub budget: usize,
    /// Slots used per size class (1..=`cache::SLOTS`).
    pub class_slots: usize,
    /// Most mappings kept in the cache.
    pub max_mappings: usize,
    /// Print statistics at exit.
    pub stats: bool,
    /// Pure pass-through to glibc (e.g. under valgrind).
    pub disabled: bool,
    /// Percent of the job's cgroup limit above which nothing is cached and the cache is
    /// released (`TURINGWATCH_PRELOAD_JOB_HIGH`, default 75). Between two thirds of it
    /// and it, cached chunks are kept but marked `MADV_FREE` (the kernel may take them).
    pub job_high_pct: usize,
}

/// Default of [`Config::job_high_pct`].
pub const DEFAULT_JOB_HIGH_PCT: usize = 75;

/// Parses a byte size: decimal digits with an optional `K`/`M`/`G`/`T` suffix
/// (binary multiples, optionally followed by `B` or `iB`, case-insensitive).
pub fn parse_size(s: &[u8]) -> Option<usize> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut v: usize = 0;
    for &c in &s[..digits] {
        v = v.checked_mul(10)?.checked_add((c - b'0') as usize)?;
    }
    v.checked_mul(1usize << suffix_shift(&s[digits..])?)
}

/// Binary shift of a size suffix: "", "B", "K", "KB", "KiB", ... (case-insensitive).
fn suffix_shift(s: &[u8]) -> Option<u32> {
    let Some(first) = s.first() else {
        return Some(0);
    };
    let shift = match first.to_ascii_lowercase() {
        b'b' if s.len() == 1 => return Some(0),
        b'k' => 10,
        b'm' => 20,
        b'g' => 30,
        b't' => 40,
        _ => return None,
    };
    let rest = &s[1..];
    (rest.is_empty() || rest.eq_ignore_ascii_case(b"b") || rest.eq_ignore_ascii_case(b"ib")).then_some(shift)
}

/// Parses a boolean: `1/0`, `yes/no`, `true/false`, `on/off`.
pub fn parse_bool(s: &[u8]) -> Option<bool> {
    const YES: [&[u8]; 4] = [b"1", b"yes", b"true", b"on"];
    const NO: [&[u8]; 4] = [b"0", b"no", b"false", b"off"];
    if YES.iter().any(|y| s.eq_ignore_ascii_case(y)) {
        Some(true)
    } else if NO.iter().any(|n| s.eq_ignore_ascii_case(n)) {
        Some(false)
    } else {
        None
    }
}

/// Reads one environment variable without allocating.
fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns NULL or a pointer into the
    // process environment, which we only read during configuration.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(p as *const c_char) }.to_bytes())
}

/// Writes raw bytes to stderr, ignoring errors (best effort, no allocation).
pub fn stderr(parts: &[&[u8]]) {
    for part in parts {
        // SAFETY: writes `part.len()` readable bytes to fd 2.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
}

fn invalid(name: &CStr, value: &[u8], why: &[u8]) {
    stderr(&[
        b"turingwatch-preload: ignoring invalid ",
        name.to_bytes(),
        b"='",
        value,
        b"' (",
        why,
        b"); using the default\n",
    ]);
}

fn size_var(name: &CStr, min: usize, max: usize, why: &[u8]) -> Option<usize> {
    let v = env(name)?;
    match parse_size(v) {
        Some(n) if n >= min && n <= max => Some(n),
        _ => {
            invalid(name, v, why);
            None
        }
    }
}

fn bool_var(name: &CStr) -> Option<bool> {
    let v = env(name)?;
    let b = parse_bool(v);
    if b.is_none() {
        invalid(name, v, b"expected 0 or 1");
    }
    b
}

/// Loads the configuration from the environment and the cgroup hierarchy.
pub fn load() -> Config {
    let threshold = size_var(c"TURINGWATCH_PRELOAD_THRESHOLD", 4096, 1 << 40, b"expected a size from 4K to 1T")
        .unwrap_or(DEFAULT_THRESHOLD);
    let budget = size_var(c"TURINGWATCH_PRELOAD_BUDGET", 0, 1 << 50, b"expected a size such as 512M")
        .unwrap_or_else(default_budget);
    let class_slots = size_var(c"TURINGWATCH_PRELOAD_CLASS_SLOTS", 0, crate::cache::SLOTS, b"expected 0 to 32")
        .unwrap_or(crate::cache::SLOTS);
    let max_mappings = size_var(c"TURINGWATCH_PRELOAD_MAX_MAPPINGS", 0, 1 << 20, b"expected 0 to 1048576")
        .unwrap_or(DEFAULT_MAX_MAPPINGS);
    let stats = bool_var(c"TURINGWATCH_PRELOAD_STATS").unwrap_or(false);
    let disabled = bool_var(c"TURINGWATCH_PRELOAD_DISABLE").unwrap_or(false);
    let job_high_pct = size_var(c"TURINGWATCH_PRELOAD_JOB_HIGH", 1, 100, b"expected a percentage from 1 to 100")
        .unwrap_or(DEFAULT_JOB_HIGH_PCT);
    Config { threshold, budget, class_slots, max_mappings, stats, disabled, job_high_pct }
}

/// min(1 GiB, 25 % of the job's cgroup memory limit when one is found).
pub fn default_budget() -> usize {
    match cgroup_memory_limit() {
        Some(limit) => DEFAULT_BUDGET_CAP.min(limit / 4),
        None => DEFAULT_BUDGET_CAP,
    }
}

/// Reads a small file into `buf`; returns the filled prefix.
fn read_file<'a>(path: &CStr, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    // SAFETY: `path` is NUL-terminated; plain open/read/close syscalls into our buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let mut n = 0usize;
        while n < buf.len() {
            let r = libc::read(fd, buf.as_mut_ptr().add(n).cast(), buf.len() - n);
            if r <= 0 {
                break;
            }
            n += r as usize;
        }
        libc::close(fd);
        Some(&buf[..n])
    }
}

/// Parses the content of a `memory.max` / `memory.limit_in_bytes` file.
/// "max" and the cgroup v1 "unlimited" value (close to 2^63) mean no limit.
pub fn parse_limit(content: &[u8]) -> Option<usize> {
    let line = content.split(|&c| c == b'\n').next()?;
    let v = parse_size(line).filter(|_| line.iter().all(u8::is_ascii_digit))?;
    (v > 0 && v < (1 << 60)).then_some(v)
}

/// Longest cgroup file path we handle (longer ones are skipped).
pub const PATH_MAX: usize = 512;

/// The cgroup that bounds the job's memory: the one with the smallest limit on the path
/// from our cgroup up to the root, and the file that reports its current usage.
#[derive(Clone, Copy)]
pub struct JobCgroup {
    /// Its limit in bytes.
    pub limit: usize,
    /// NUL-terminated path of `memory.current` (v2) or `memory.usage_in_bytes` (v1).
    pub usage_path: [u8; PATH_MAX],
}

impl JobCgroup {
    /// The usage file's path.
    pub fn usage(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.usage_path).unwrap_or(c"")
    }
}

/// Finds the job's cgroup for cgroup v2 (`memory.max`) and v1 (`memory.limit_in_bytes`)
/// from the content of `/proc/self/cgroup`. `read_limit` is given a NUL-terminated path
/// and returns the parsed limit of that file. Every process of a job finds the same cgroup
/// (the job's or step's, whichever is tighter), so they all watch the same counter.
pub fn job_cgroup(proc_self_cgroup: &[u8], mut read_limit: impl FnMut(&CStr) -> Option<usize>) -> Option<JobCgroup> {
    let mut best: Option<JobCgroup> = None;
    for line in proc_self_cgroup.split(|&c| c == b'\n') {
        let mut fields = line.splitn(3, |&c| c == b':');
        let (Some(_id), Some(ctrl), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let (prefix, file, usage): (&[u8], &[u8], &[u8]) = if ctrl.is_empty() {
            (b"/sys/fs/cgroup", b"/memory.max", b"/memory.current")
        } else if ctrl.split(|&c| c == b',').any(|c| c == b"memory") {
            (b"/sys/fs/cgroup/memory", b"/memory.limit_in_bytes", b"/memory.usage_in_bytes")
        } else {
            continue;
        };
        // Walk from the cgroup itself up to the root of the (possibly namespaced) hierarchy.
        let mut end = path.len();
        loop {
            let dir = &path[..end];
            let dir = if dir == b"/" { &dir[..0] } else { dir };
            let mut buf = [0u8; PATH_MAX];
            if join(&mut buf, &[prefix, dir, file])
                && let Ok(p) = CStr::from_bytes_until_nul(&buf)
                && let Some(v) = read_limit(p)
                && best.is_none_or(|b| v < b.limit)
            {
                let mut usage_path = [0u8; PATH_MAX];
                if join(&mut usage_path, &[prefix, dir, usage]) {
                    best = Some(JobCgroup { limit: v, usage_path });
                }
            }
            match dir.iter().rposition(|&c| c == b'/') {
                Some(i) if !dir.is_empty() => end = i,
                _ => break,
            }
        }
    }
    best
}

/// Concatenates `parts` into `buf` with a terminating NUL; `false` if it does not fit.
fn join(buf: &mut [u8; PATH_MAX], parts: &[&[u8]]) -> bool {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total >= buf.len() {
        return false;
    }
    let mut at = 0;
    for p in parts {
        buf[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    buf[at] = 0;
    true
}

/// The smallest memory limit on the path from our cgroup to the root.
pub fn min_cgroup_limit(proc_self_cgroup: &[u8], read_limit: impl FnMut(&CStr) -> Option<usize>) -> Option<usize> {
    job_cgroup(proc_self_cgroup, read_limit).map(|j| j.limit)
}

/// The job's cgroup as seen by this process, if it has a memory limit.
pub fn find_job_cgroup() -> Option<JobCgroup> {
    let mut buf = [0u8; 2048];
    let content = read_file(c"/proc/self/cgroup", &mut buf)?;
    job_cgroup(content, |path| {
        let mut b = [0u8; 64];
        read_file(path, &mut b).and_then(parse_limit)
    })
}

/// The job's cgroup memory limit, if any.
pub fn cgroup_memory_limit() -> Option<usize> {
    find_job_cgroup().map(|j| j.limit)
}

/// Reads a usage counter (`memory.current` / `memory.usage_in_bytes`): one decimal number.
pub fn read_usage(path: &CStr) -> Option<usize> {
    let mut b = [0u8; 64];
    let content = read_file(path, &mut b)?;
    let line = content.split(|&c| c == b'\n').next()?;
    if line.is_empty() || !line.iter().all(u8::is_ascii_digit) {
        return None;
    }
    parse_size(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"131072"), Some(131072));
        assert_eq!(parse_size(b"128K"), Some(128 << 10));
        assert_eq!(parse_size(b"512m"), Some(512 << 20));
        assert_eq!(parse_size(b"2GiB"), Some(2 << 30));
        assert_eq!(parse_size(b"1gb"), Some(1 << 30));
        assert_eq!(parse_size(b"1T"), Some(1 << 40));
        assert_eq!(parse_size(b"12B"), Some(12));
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"M"), None);
        assert_eq!(parse_size(b"-1"), None);
        assert_eq!(parse_size(b"10X"), None);
        assert_eq!(parse_size(b"10 M"), None);
        assert_eq!(parse_size(b"99999999999999999999999"), None);
        assert_eq!(parse_size(b"99999999999T"), None);
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool(b"1"), Some(true));
        assert_eq!(parse_bool(b"YES"), Some(true));
        assert_eq!(parse_bool(b"off"), Some(false));
        assert_eq!(parse_bool(b"2"), None);
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(b"max\n"), None);
        assert_eq!(parse_limit(b"9223372036854771712\n"), None);
        assert_eq!(parse_limit(b"4294967296\n"), Some(4 << 30));
        assert_eq!(parse_limit(b"12k\n"), None);
    }

    #[test]
    fn cgroup_walk_takes_minimum_up_the_tree() {
        let v2 = b"0::/system.slice/slurmstepd.scope/job_7/step_0/user/task_0\n";
        let mut seen = Vec::new();
        let lim = min_cgroup_limit(v2, |p| {
            let s = p.to_str().unwrap().to_string();
            seen.push(s.clone());
            match s.as_str() {
                "/sys/fs/cgroup/system.slice/slurmstepd.scope/job_7/memory.max" => Some(8 << 30),
                "/sys/fs/cgroup/system.slice/slurmstepd.scope/job_7/step_0/memory.max" => Some(16 << 30),
                _ => None,
            }
        });
        assert_eq!(lim, Some(8 << 30));
        let job = job_cgroup(v2, |p| match p.to_str().unwrap() {
            "/sys/fs/cgroup/system.slice/slurmstepd.scope/job_7/memory.max" => Some(8 << 30),
            "/sys/fs/cgroup/system.slice/slurmstepd.scope/job_7/step_0/memory.max" => Some(16 << 30),
            _ => None,
        })
        .unwrap();
        assert_eq!(job.limit, 8 << 30);
        assert_eq!(job.usage().to_str().unwrap(), "/sys/fs/cgroup/system.slice/slurmstepd.scope/job_7/memory.current");
        assert_eq!(
            seen.first().unwrap(),
            "/sys/fs/cgroup/system.slice/slurmstepd.scope/job_7/step_0/user/task_0/memory.max"
        );
        assert_eq!(seen.last().unwrap(), "/sys/fs/cgroup/memory.max");

        let v1 = b"9:cpu,cpuacct:/\n4:memory:/process_api/abc\n";
        let lim = min_cgroup_limit(v1, |p| match p.to_str().unwrap() {
            "/sys/fs/cgroup/memory/memory.limit_in_bytes" => Some(2 << 30),
            _ => None,
        });
        assert_eq!(lim, Some(2 << 30));
        let job = job_cgroup(v1, |p| match p.to_str().unwrap() {
            "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes" => Some(1 << 30),
            "/sys/fs/cgroup/memory/memory.limit_in_bytes" => Some(2 << 30),
            _ => None,
        })
        .unwrap();
        assert_eq!(job.limit, 1 << 30);
        assert_eq!(job.usage().to_str().unwrap(), "/sys/fs/cgroup/memory/process_api/abc/memory.usage_in_bytes");
        assert_eq!(min_cgroup_limit(b"garbage", |_| Some(1)), None);
        // A path too long for the buffer is skipped, not truncated.
        let long = [b"0::/".as_slice(), &[b'a'; 600]].concat();
        assert!(
            job_cgroup(&long, |_| Some(1 << 30))
                .is_some_and(|j| j.usage().to_bytes() == b"/sys/fs/cgroup/memory.current")
        );
    }

    #[test]
    fn default_budget_is_capped() {
        let b = default_budget();
        assert!(b > 0 && b <= DEFAULT_BUDGET_CAP);
    }
}
