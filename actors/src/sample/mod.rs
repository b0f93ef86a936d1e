//! What a scraper measures about a job step on one node, one timestamped sample at a time.
//!
//! The readers of /proc, cgroups and NVML fill these records; the wire format carries them to
//! the server; the store encodes them compactly. Counters are cumulative (as the kernel keeps
//! them) so a lost sample loses no CPU time: rates come from differences.

mod record;

pub use record::{GpuReading, StepSample};
