//! Any sacct output parses to records plus reported malformed lines — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turingwatch::slurm::sacct_parse::parse_sacct;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_sacct(text, &jiff::tz::TimeZone::UTC, 1_800_000_000);
});
