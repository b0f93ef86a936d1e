//! The scraper's local spool: reports wait here until the server acknowledges them.
//!
//! Every report is written here *before* it is sent, and removed only after the server's HTTP
//! 200 (sent after its commit), so neither a server outage nor a scraper crash loses a sampled
//! report, and the server's `(node, report id)` check makes a resend harmless. Files are
//! written to a temporary name, synced, then renamed, so a crash never leaves half a report.
//! Names sort by creation time, so the oldest report goes first. The spool is bounded: past
//! `max_bytes` the oldest reports are dropped, logged and counted — a full disk on a compute
//! node would hurt users more than a gap in the samples.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the spool could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("report of {size} bytes does not fit in a spool of {max} bytes")]
    TooLarge { size: u64, max: u64 },
}

const SUFFIX: &str = ".twr";

/// A bounded directory of encoded reports.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    dropped: u64,
}

impl Spool {
    /// Opens (creating) the spool directory.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| SpoolError::Io { path: dir.clone(), source })?;
        Ok(Spool { dir, max_bytes, dropped: 0 })
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
        let read = std::fs::read_dir(&self.dir).map_err(|source| SpoolError::Io { path: self.dir.clone(), source })?;
        let mut out: Vec<(PathBuf, u64)> = read
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(SUFFIX) && !n.starts_with('.')))
            .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
            .collect();
        out.sort();
        Ok(out)
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
}
