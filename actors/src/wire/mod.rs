//! The wire between a node's scraper and the server: the versioned batch format (`format`: one
//! node's samples), the scraper's spool that keeps batches on disk until the server acknowledges
//! them (`spool`), the blocking HTTP POST that sends one (`send`), and the ingest path both
//! sides use.
//!
//! One module for both ends, so the node role and the server's ingest agree on the format and
//! neither imports the other.

pub mod admission;
pub mod format;
pub mod send;
pub mod spool;

/// Where the server takes scraper reports (HTTP POST, MUNGE credential in a header).
pub const INGEST_PATH: &str = "/ingest/v1/report";
