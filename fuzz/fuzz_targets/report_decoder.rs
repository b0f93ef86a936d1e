//! Any request body decodes to a report or a clean error — never a panic; what decodes
//! re-encodes to the same report.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turingwatch::wire::format::{decode_report, encode_report};

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = decode_report(data) {
        let again = encode_report(&report);
        assert_eq!(decode_report(&again).ok().map(|r| encode_report(&r)), Some(again));
    }
});
