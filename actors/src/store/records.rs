//! Record values: a format byte, then postcard.
//!
//! postcard is compact and has no field names, so a changed struct needs a new format byte (and
//! a migration that rewrites old values). The byte lets a reader refuse what it cannot read.

use serde::{de::DeserializeOwned, Serialize};

/// Format byte of records written by this build.
const RECORD_FORMAT: u8 = 1;

/// A stored record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("empty record")]
    Empty,
    #[error("record format {0} is not known to this build")]
    UnknownFormat(u8),
    #[error("record does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("record does not decode: bad {0}")]
    Malformed(&'static str),
}

/// Encodes a record for storage.
pub fn encode_record<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![RECORD_FORMAT];
    // Serialising plain structs to a Vec cannot fail; an error would leave just the format byte,
    // which decodes as an error later rather than panicking now.
    if let Ok(bytes) = postcard::to_allocvec(record) {
        out.extend_from_slice(&bytes);
    }
    out
}

/// Decodes a stored record.
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    match bytes.split_first() {
        None => Err(RecordError::Empty),
        Some((&RECORD_FORMAT, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&other, _)) => Err(RecordError::UnknownFormat(other)),
    }
}
