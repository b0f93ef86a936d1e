//! Jobs are stored sixteen to a B-tree value (a block of consecutive job ids), not one each.
//!
//! Why: redb pays a B-tree descent, page bookkeeping and, every few inserts, a leaf split per
//! insert; with one ~400-byte value per job that was ~4 µs a job, most of the import's store
//! time. Sacct lists jobs in id order, so an import fills whole blocks: one insert per sixteen
//! jobs measured ~1 µs a job. Reading a job reads its block (~7 KB) and picks its entry.
//!
//! A block value is a format byte, then per job (by id): the id's offset in the block, the length
//! of its value, and its value (a `job_codec` job value, format 1 or 2).

use super::columns::{get_varint, put_varint};
use super::records::RecordError;

/// Job ids per block.
pub const BLOCK_JOBS: u64 = 16;

const FORMAT: u8 = 1;

/// The block (key of `job_blocks`) holding job `id`.
pub fn block_of(id: u64) -> u64 {
    id / BLOCK_JOBS
}

/// Builds a block value entry by entry, in id order.
pub struct BlockBuilder<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> BlockBuilder<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.clear();
        out.push(FORMAT);
        BlockBuilder { out }
    }

    /// Appends job `id`'s entry, its value written by `write`.
    pub fn push(&mut self, id: u64, write: impl FnOnce(&mut Vec<u8>)) {
        put_varint(self.out, id % BLOCK_JOBS);
        // The length as a 3-byte varint, patched once the value is written.
        let at = self.out.len();
        self.out.extend_from_slice(&[0x80, 0x80, 0]);
        write(self.out);
        let len = self.out.len() - at - 3;
        if len < 1 << 21 {
            self.out[at..at + 3].copy_from_slice(&[(len as u8) | 0x80, ((len >> 7) as u8) | 0x80, (len >> 14) as u8]);
        } else {
            let mut prefix = Vec::new();
            put_varint(&mut prefix, len as u64);
            self.out.splice(at..at + 3, prefix);
        }
    }
}

/// The entries of a block value: (job id, job value), by id.
pub fn entries(block: u64, value: &[u8]) -> Result<Vec<(u64, &[u8])>, RecordError> {
    let (&format, mut rest) = value.split_first().ok_or(RecordError::Empty)?;
    if format != FORMAT {
        return Err(RecordError::UnknownFormat(format));
    }
    let bad = |_| RecordError::Malformed("job block");
    let mut out = Vec::with_capacity(BLOCK_JOBS as usize);
    while !rest.is_empty() {
        let offset = get_varint(&mut rest).map_err(bad)?;
        let len = usize::try_from(get_varint(&mut rest).map_err(bad)?).unwrap_or(usize::MAX);
        if offset >= BLOCK_JOBS
            || len > rest.len()
            || out.last().is_some_and(|(id, _)| *id >= block * BLOCK_JOBS + offset)
        {
            return Err(RecordError::Malformed("job block entry"));
        }
        let (job, after) = rest.split_at(len);
        out.push((block * BLOCK_JOBS + offset, job));
        rest = after;
    }
    Ok(out)
}

/// Job `id`'s value in its block's value.
pub fn find(id: u64, value: &[u8]) -> Result<Option<&[u8]>, RecordError> {
    Ok(entries(block_of(id), value)?.into_iter().find(|(entry, _)| *entry == id).map(|(_, job)| job))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_reject_garbage() {
        let mut buf = Vec::new();
        let mut block = BlockBuilder::new(&mut buf);
        block.push(33, |out| out.extend_from_slice(b"thirty-three"));
        block.push(35, |out| out.extend_from_slice(&vec![5; 3 << 20]));
        block.push(47, |_| {});
        assert_eq!(block_of(47), 2);
        let list = entries(2, &buf).unwrap();
        assert_eq!(list.iter().map(|(id, v)| (*id, v.len())).collect::<Vec<_>>(), [(33, 12), (35, 3 << 20), (47, 0)]);
        assert_eq!(find(33, &buf).unwrap(), Some(&b"thirty-three"[..]));
        assert_eq!(find(34, &buf).unwrap(), None);
        for cut in 1..40 {
            let _ = entries(2, &buf[..cut]);
        }
        assert!(entries(2, &buf[..20]).is_err());
        assert!(entries(2, &[]).is_err());
        assert!(entries(2, &[1, 16, 0]).is_err()); // offset outside the block
        assert!(entries(2, &[1, 3, 0, 2, 0]).is_err()); // ids not ascending
        assert!(matches!(entries(2, &[9]), Err(RecordError::UnknownFormat(9))));
    }
}
