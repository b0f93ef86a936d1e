//! Report formats: the versioned scraper→server wire format and the result bundle.
//! (Issues #4, #5.)
//!
//! `wire` encodes and decodes scraper reports; `spool` keeps them on the scraper's disk until
//! the server has acknowledged them. `bundle` writes the period result bundle; `job_text` is the
//! terminal report of `turingwatch job`.

pub mod bundle;
pub mod job_text;
pub mod send;
pub mod spool;
pub mod wire;
