//! Report formats: the versioned scraper→server wire format and the result bundle.
//! (Issues #4, #5.)
//!
//! `wire` encodes and decodes scraper reports; `spool` keeps them on the scraper's disk until
//! the server has acknowledged them.

pub mod send;
pub mod spool;
pub mod wire;
