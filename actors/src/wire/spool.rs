//! The scraper's local spool: reports wait here until the server acknowledges them.
//!
//! Every report is written here *before* it is sent, and removed only after the server's HTTP
//! 200 (sent after its commit), so neither a server outage nor a scraper crash loses a sampled
//! report, and the server's `(node, report id)` check makes a resend harmless. Files are
//! written to a temporary name, synced, then renamed, so a crash never leaves half a report.
//! Names sort by creation time, so the oldest report goes first. The spool is bounded: past
//! `max_bytes` the oldest reports are dropped, logged and counted — a full disk on a compute
//! node would hurt users more than a gap in the samples.
//!
//! A report the server refused for good (a 4xx other than 401/408/429: resending it cannot
//! help) is never deleted silently: it is moved to `<spool>/rejected/`, with the HTTP status in
//! its name, where an admin finds it after the log line that named the status and the server's
//! reason; moved back into the spool directory once the cause is fixed, it is sent again by the
//! next scraper run. That directory has its own bound (`rejected_max_bytes`, an eighth of the
//! spool's): past it the oldest refused reports go first, and are counted.
//!
//! Where the spool lives when `[scrape] spool_dir` is empty: see [`default_root`].

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the spool could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("report of {size} bytes does not fit in a spool of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("{path} is not a directory of uid {uid} that only it can write (owner uid {owner}, mode {mode:o}); remove it, or set [scrape] spool_dir")]
    NotOurs { path: PathBuf, uid: u32, owner: u32, mode: u32 },
}

const SUFFIX: &str = ".twr";
/// Subdirectory of reports the server refused for good.
pub const REJECTED_DIR: &str = "rejected";

/// What [`Spool::set_aside`] did with a refused report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetAside {
    /// Refused reports dropped from `rejected/` to make room, this time.
    pub dropped: u64,
}

/// A bounded directory of encoded reports.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    dropped: u64,
    rejected: u64,
    rejected_dropped: u64,
}

impl Spool {
    /// Opens (creating) the spool directory.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| SpoolError::Io { path: dir.clone(), source })?;
        Ok(Spool { dir, max_bytes, dropped: 0, rejected: 0, rejected_dropped: 0 })
    }

    /// Bound of `rejected/`: an eighth of the spool's, at least one report's worth.
    pub fn rejected_max_bytes(&self) -> u64 {
        (self.max_bytes / 8).max(1 << 20).min(self.max_bytes)
    }

    /// Reports set aside as refused since the spool was opened.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Refused reports dropped from `rejected/` (full) since the spool was opened.
    pub fn rejected_dropped(&self) -> u64 {
        self.rejected_dropped
    }

    /// Moves a report the server refused for good (HTTP `status`) out of the send queue into
    /// `rejected/`, dropping the oldest refused reports past [`Spool::rejected_max_bytes`].
    pub fn set_aside(&mut self, path: &Path, status: u16) -> Result<SetAside, SpoolError> {
        let aside = self.dir.join(REJECTED_DIR);
        let io = |source| SpoolError::Io { path: aside.clone(), source };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&aside).map_err(io)?;
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let max = self.rejected_max_bytes();
        let mut kept = list(&aside)?;
        let mut total: u64 = kept.iter().map(|(_, len)| len).sum();
        kept.reverse();
        let mut done = SetAside::default();
        while total + size > max {
            let Some((oldest, len)) = kept.pop() else { break };
            self.remove(&oldest)?;
            total -= len;
            done.dropped += 1;
        }
        self.rejected_dropped += done.dropped;
        if size > max {
            // Larger than the whole bound: nothing can keep it.
            self.remove(path)?;
            self.rejected_dropped += 1;
            done.dropped += 1;
            return Ok(done);
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("report.twr");
        let stem = name.strip_suffix(SUFFIX).unwrap_or(name);
        let target = aside.join(format!("{stem}.http{status}{SUFFIX}"));
        std::fs::rename(path, &target).map_err(io)?;
        self.rejected += 1;
        Ok(done)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reports dropped because the spool was full, since it was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Stores a report durably; returns its path. Drops the oldest reports if needed to fit.
    pub fn put(&mut self, made_at: u64, id: u64, bytes: &[u8]) -> Result<PathBuf, SpoolError> {
        let size = bytes.len() as u64;
        if size > self.max_bytes {
            return Err(SpoolError::TooLarge { size, max: self.max_bytes });
        }
        let mut entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|(_, len)| len).sum();
        entries.reverse(); // pop() now yields the oldest
        while total + size > self.max_bytes {
            let Some((oldest, len)) = entries.pop() else { break };
            self.remove(&oldest)?;
            total -= len;
            self.dropped += 1;
            tracing::warn!(path = %oldest.display(), dropped = self.dropped, "spool full: oldest report dropped");
        }
        let name = format!("{made_at:016}-{id:016x}{SUFFIX}");
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let io = |source| SpoolError::Io { path: tmp.clone(), source };
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(path)
    }

    /// Spooled reports, oldest first, with their sizes.
    pub fn entries(&self) -> Result<Vec<(PathBuf, u64)>, SpoolError> {
        list(&self.dir)
    }

    /// Refused reports kept in `rejected/`, oldest first, with their sizes.
    pub fn rejected_entries(&self) -> Result<Vec<(PathBuf, u64)>, SpoolError> {
        let aside = self.dir.join(REJECTED_DIR);
        if !aside.exists() {
            return Ok(Vec::new());
        }
        list(&aside)
    }

    /// Reads a spooled report.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, SpoolError> {
        std::fs::read(path).map_err(|source| SpoolError::Io { path: path.to_path_buf(), source })
    }

    /// Removes a report (acknowledged, or refused for good). Already gone is fine.
    pub fn remove(&self, path: &Path) -> Result<(), SpoolError> {
        match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(SpoolError::Io { path: path.to_path_buf(), source: err })
            }
            _ => Ok(()),
        }
    }
}

/// Report files (`*.twr`, not temporary) in `dir`, sorted by name (= oldest first).
fn list(dir: &Path) -> Result<Vec<(PathBuf, u64)>, SpoolError> {
    let read = std::fs::read_dir(dir).map_err(|source| SpoolError::Io { path: dir.to_path_buf(), source })?;
    let mut out: Vec<(PathBuf, u64)> = read
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(SUFFIX) && !n.starts_with('.')))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    out.sort();
    Ok(out)
}

/// The spool's root when `[scrape] spool_dir` is empty; the node's spool is `<root>/<node>`.
///
/// - Under a systemd unit with `StateDirectory=` (the node agent, `turingwatch-scrape.service`):
///   `$STATE_DIRECTORY/spool`. A state directory survives restarts and reboots, so reports
///   wait there through a server outage. It is used only if it is a real directory owned by this
///   uid: SLURM exports the submitter's environment into jobs, so a scraper job placed by the
///   distributor inherits the distributor unit's `$STATE_DIRECTORY`, which on a compute node
///   names a directory that is missing or belongs to someone else.
/// - Otherwise (scraper jobs placed by the distributor, which run as the service user on
///   compute nodes where no unit made a directory for them): `/var/tmp/turingwatch-<uid>`,
///   created mode 0700 and checked to be a directory (not a symlink) that this uid owns and no
///   one else can write; anything else there is refused, never used or followed. Why /var/tmp:
///   it exists on every node, is sticky (no one can rename or delete our entry once it is ours),
///   and survives reboots and job ends, so the next scraper run on the node sends what the last
///   one left. `$TMPDIR` and `/tmp` are often private to a job (`job_container/tmpfs`,
///   `PrivateTmp=`) and wiped when it ends, and `$XDG_RUNTIME_DIR` exists only while a login
///   session does; the service user has neither.
pub fn default_root(state_directory: Option<&str>) -> Result<PathBuf, SpoolError> {
    // SAFETY: geteuid cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    if let Some(state) = state_directory.and_then(|s| s.split(':').next()).filter(|s| s.starts_with('/')) {
        let state = Path::new(state);
        if owned_dir(state, uid).is_ok() {
            let spool = state.join("spool");
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&spool)
                .map_err(|source| SpoolError::Io { path: spool.clone(), source })?;
            return Ok(spool);
        }
    }
    private_dir(Path::new("/var/tmp"), uid)
}

/// `<base>/turingwatch-<uid>`, created 0700 if missing, and verified to be ours alone.
pub fn private_dir(base: &Path, uid: u32) -> Result<PathBuf, SpoolError> {
    let dir = base.join(format!("turingwatch-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(SpoolError::Io { path: dir, source }),
    }
    owned_dir(&dir, uid)?;
    Ok(dir)
}

/// Checks that `dir` is a directory (not a symlink to one) owned by `uid` that no one else
/// may write. The check is made on an open descriptor of the directory itself (`O_NOFOLLOW`),
/// so a symlink planted there is refused, not followed.
fn owned_dir(dir: &Path, uid: u32) -> Result<(), SpoolError> {
    let io = |source| SpoolError::Io { path: dir.to_path_buf(), source };
    let handle =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY).open(dir).map_err(
            |err| match err.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                    let meta = std::fs::symlink_metadata(dir).ok();
                    SpoolError::NotOurs {
                        path: dir.to_path_buf(),
                        uid,
                        owner: meta.as_ref().map_or(u32::MAX, |m| m.uid()),
                        mode: meta.map_or(0, |m| m.mode()),
                    }
                }
                _ => io(err),
            },
        )?;
    let meta = handle.metadata().map_err(io)?;
    let mode = meta.mode() & 0o7777;
    if meta.uid() != uid || mode & 0o022 != 0 {
        return Err(SpoolError::NotOurs { path: dir.to_path_buf(), uid, owner: meta.uid(), mode });
    }
    if mode & 0o077 != 0 {
        // Ours, but readable by others (e.g. made by an older version): close it.
        let _ = handle.set_permissions(std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("turingwatch-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn reports_come_back_oldest_first_until_removed() {
        let mut spool = Spool::open(dir("order"), 1_000).unwrap();
        spool.put(200, 2, b"second").unwrap();
        let first = spool.put(100, 1, b"first").unwrap();
        let entries = spool.entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(spool.read(&entries[0].0).unwrap(), b"first");
        spool.remove(&first).unwrap();
        spool.remove(&first).unwrap();
        assert_eq!(spool.entries().unwrap().len(), 1);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_it() {
        let mut spool = Spool::open(dir("bound"), 10).unwrap();
        spool.put(1, 1, b"aaaa").unwrap();
        spool.put(2, 2, b"bbbb").unwrap();
        spool.put(3, 3, b"cccc").unwrap();
        let left: Vec<Vec<u8>> = spool.entries().unwrap().iter().map(|(p, _)| spool.read(p).unwrap()).collect();
        assert_eq!(left, [b"bbbb".to_vec(), b"cccc".to_vec()]);
        assert_eq!(spool.dropped(), 1);
        assert!(matches!(spool.put(4, 4, &[0; 11]), Err(SpoolError::TooLarge { .. })));
    }

    #[test]
    fn a_refused_report_is_set_aside_not_deleted_and_the_aside_is_bounded() {
        let mut spool = Spool::open(dir("aside"), 8 << 20).unwrap();
        assert_eq!(spool.rejected_max_bytes(), 1 << 20);
        let first = spool.put(1, 1, &[1; 600 << 10]).unwrap();
        spool.set_aside(&first, 403).unwrap();
        assert!(spool.entries().unwrap().is_empty(), "no longer sent");
        let kept = spool.rejected_entries().unwrap();
        assert_eq!(kept.len(), 1);
        assert!(kept[0].0.to_str().unwrap().ends_with(".http403.twr"), "{:?}", kept[0].0);
        assert_eq!(spool.read(&kept[0].0).unwrap().len(), 600 << 10, "kept whole");
        // A second one does not fit beside the first: the oldest goes, and is counted.
        let second = spool.put(2, 2, &[2; 600 << 10]).unwrap();
        let done = spool.set_aside(&second, 400).unwrap();
        assert_eq!(done.dropped, 1);
        let kept = spool.rejected_entries().unwrap();
        assert_eq!(kept.len(), 1);
        assert!(kept[0].0.to_str().unwrap().contains(".http400"));
        assert_eq!((spool.rejected(), spool.rejected_dropped()), (2, 1));
        // The refused directory is not mistaken for a report.
        assert!(spool.entries().unwrap().is_empty());
    }

    #[test]
    fn the_private_directory_is_made_0700_and_reused() {
        let base = dir("private");
        std::fs::create_dir_all(&base).unwrap();
        // SAFETY: as in default_root.
        let uid = unsafe { libc::geteuid() };
        let made = private_dir(&base, uid).unwrap();
        let mode = std::fs::metadata(&made).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(private_dir(&base, uid).unwrap(), made, "an existing own directory is reused");
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&base, uid).unwrap();
        assert_eq!(std::fs::metadata(&made).unwrap().mode() & 0o777, 0o700, "closed again");
    }

    #[test]
    fn a_planted_symlink_or_foreign_directory_is_refused() {
        let base = dir("planted");
        std::fs::create_dir_all(base.join("elsewhere")).unwrap();
        // SAFETY: as in default_root.
        let uid = unsafe { libc::geteuid() };
        std::os::unix::fs::symlink(base.join("elsewhere"), base.join(format!("turingwatch-{uid}"))).unwrap();
        let err = private_dir(&base, uid).unwrap_err();
        assert!(matches!(err, SpoolError::NotOurs { .. }), "{err}");
        assert!(err.to_string().contains("[scrape] spool_dir"), "{err}");
        // A directory that another uid would own: pretend by asking for a uid we are not.
        let other = uid.wrapping_add(1);
        std::fs::create_dir(base.join(format!("turingwatch-{other}"))).unwrap();
        assert!(matches!(private_dir(&base, other), Err(SpoolError::NotOurs { .. })));
        // Ours but writable by others is refused too (someone may have put files in it).
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(owned_dir(&open, uid), Err(SpoolError::NotOurs { .. })));
    }

    #[test]
    fn a_state_directory_is_used_only_when_it_is_ours() {
        let base = dir("state");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = default_root(Some(base.to_str().unwrap())).unwrap();
        assert_eq!(root, base.join("spool"));
        // A state directory that does not exist here (inherited through SLURM): the fallback.
        let missing = default_root(Some("/nonexistent/turingwatch")).unwrap();
        // SAFETY: as in default_root.
        let uid = unsafe { libc::geteuid() };
        assert!(missing.starts_with("/var/tmp") && missing.ends_with(format!("turingwatch-{uid}")));
    }
}
