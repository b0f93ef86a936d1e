//! The job indexes (by end time, by user) as buckets: one value holds the sorted entries of a
//! bucket, instead of one B-tree entry per job.
//!
//! Why: an entry per job made the import do three index inserts per job besides the job itself,
//! each costing a full B-tree descent (the inserts were most of the import's store time). The
//! jobs of one imported part fall into a few buckets, so each bucket is read and rewritten once
//! per part. Buckets stay small: at most [`ID_BUCKET`] ids, and by end time also at most
//! [`END_BUCKET_SECS`] of end times. A value is a format byte and fixed-width little-endian
//! entries, sorted.

use super::records::RecordError;

/// Seconds of end time per `jobs_by_end` bucket.
pub const END_BUCKET_SECS: u64 = 600;

/// Job ids per bucket (`id / ID_BUCKET` is part of every bucket key).
pub const ID_BUCKET: u64 = 4096;

const FORMAT: u8 = 1;

/// The `jobs_by_end` bucket of a job's (end or `u64::MAX` while running, id) entry.
pub fn end_bucket(end: u64, id: u64) -> (u64, u64) {
    (end / END_BUCKET_SECS, id / ID_BUCKET)
}

/// The entries of a bucket value, sorted.
pub fn decode<const N: usize>(value: &[u8]) -> Result<Vec<[u64; N]>, RecordError> {
    let (&format, body) = value.split_first().ok_or(RecordError::Empty)?;
    if format != FORMAT {
        return Err(RecordError::UnknownFormat(format));
    }
    if body.len() % (8 * N) != 0 {
        return Err(RecordError::Malformed("index bucket length"));
    }
    Ok(body
        .chunks_exact(8 * N)
        .map(|entry| {
            let mut out = [0u64; N];
            for (slot, bytes) in out.iter_mut().zip(entry.chunks_exact(8)) {
                let mut word = [0u8; 8];
                word.copy_from_slice(bytes);
                *slot = u64::from_le_bytes(word);
            }
            out
        })
        .collect())
}

/// A bucket's entries after removing `remove` and adding `add`; `None` when none are left.
pub fn apply<const N: usize>(
    old: Option<&[u8]>,
    remove: &[[u64; N]],
    add: &[[u64; N]],
) -> Result<Option<Vec<u8>>, RecordError> {
    let mut entries = match old {
        Some(value) => decode::<N>(value)?,
        None => Vec::new(),
    };
    if !remove.is_empty() {
        let mut remove = remove.to_vec();
        remove.sort_unstable();
        entries.retain(|e| remove.binary_search(e).is_err());
    }
    entries.extend_from_slice(add);
    entries.sort_unstable();
    entries.dedup();
    if entries.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(1 + entries.len() * 8 * N);
    out.push(FORMAT);
    for entry in &entries {
        for word in entry {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_add_remove_and_empty() {
        let one = apply::<2>(None, &[], &[[5, 1], [3, 2], [5, 1]]).unwrap().unwrap();
        assert_eq!(decode::<2>(&one).unwrap(), [[3, 2], [5, 1]]);
        let two = apply::<2>(Some(&one), &[[3, 2]], &[[9, 9]]).unwrap().unwrap();
        assert_eq!(decode::<2>(&two).unwrap(), [[5, 1], [9, 9]]);
        assert_eq!(apply::<2>(Some(&two), &[[5, 1], [9, 9]], &[]).unwrap(), None);
        assert!(decode::<2>(&one[..5]).is_err());
        assert!(decode::<1>(&[]).is_err());
        assert!(matches!(decode::<1>(&[7]), Err(RecordError::UnknownFormat(7))));
        assert_eq!(end_bucket(u64::MAX, 4097), (u64::MAX / 600, 1));
    }
}
