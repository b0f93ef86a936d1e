//! Disk full under a running store: writes fail, the store reopens itself once space returns,
//! and everything committed before is still there.

use super::*;
use crate::job::JobId;
use crate::sample::StepSample;
use redb::backends::FileBackend;
use redb::StorageBackend;
use std::sync::Arc;

/// A file backend whose writes fail with ENOSPC while `full` is set.
#[derive(Debug)]
struct Filling {
    file: FileBackend,
    full: Arc<AtomicBool>,
}

impl Filling {
    fn check(&self) -> std::io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }
}

impl StorageBackend for Filling {
    fn len(&self) -> std::io::Result<u64> {
        self.file.len()
    }
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.file.read(offset, len)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.file.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> std::io::Result<()> {
        self.check()?;
        self.file.sync_data(eventual)
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.file.write(offset, data)
    }
}

fn filling_store(name: &str) -> (Store, Arc<AtomicBool>) {
    let dir = std::env::temp_dir().join(format!("turingwatch-reopen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let flag = full.clone();
    let opener: Opener = Box::new(move |path| {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let backend = Filling { file: FileBackend::new(file)?, full: flag.clone() };
        redb::Builder::new().create_with_backend(backend)
    });
    (Store::open_with(&dir.join("db.redb"), opener).unwrap(), full)
}

fn samples(job: u64, n: u64) -> Vec<(JobId, StepId, StepSample)> {
    (0..n)
        .map(|i| (JobId(job), StepId::BATCH, StepSample { at: 1_000 + i, cpu_user_cs: i, ..Default::default() }))
        .collect()
}

#[test]
fn a_store_broken_by_a_full_disk_reopens_itself_and_keeps_what_was_committed() {
    let (store, full) = filling_store("full");
    store.append_samples("n1", &samples(1, 10)).unwrap();
    store.set_meta("acknowledged", 1).unwrap();
    assert!(store.healthy());

    full.store(true, Ordering::SeqCst);
    let err = store.append_samples("n1", &samples(2, 10)).unwrap_err();
    assert!(err.is_io(), "{err}");
    assert!(!store.healthy());
    // Without a reopen redb would answer every later call with `PreviousIo`; while the disk is
    // still full the reopen fails too (or the write does), and the store stays broken.
    assert!(store.set_meta("acknowledged", 2).is_err());
    assert!(!store.healthy());

    // Space returns: the next call reopens the file and works, with nothing committed lost.
    full.store(false, Ordering::SeqCst);
    assert_eq!(store.meta("acknowledged").unwrap(), Some(1));
    assert!(store.healthy());
    assert!(store.reopen_count() >= 1);
    assert_eq!(store.samples_of_job(JobId(1)).unwrap().values().map(Vec::len).sum::<usize>(), 10);
    store.append_samples("n1", &samples(2, 10)).unwrap();
    store.set_meta("acknowledged", 2).unwrap();
    assert_eq!(store.samples_of_job(JobId(2)).unwrap().values().map(Vec::len).sum::<usize>(), 10);
    assert_eq!(store.meta("acknowledged").unwrap(), Some(2));
}

#[test]
fn an_explicit_reopen_of_a_healthy_store_is_a_no_op() {
    let (store, _full) = filling_store("noop");
    store.set_meta("k", 7).unwrap();
    store.reopen().unwrap();
    assert_eq!(store.reopen_count(), 0);
    assert_eq!(store.meta("k").unwrap(), Some(7));
}
