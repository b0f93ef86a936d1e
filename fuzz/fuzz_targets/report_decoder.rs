//! Any request body decodes to a report or a clean error — never a panic; what decodes
//! re-encodes to the same report.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turingwatch::wire::format::{decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = decode_batch(data) {
        let again = encode_batch(&report);
        assert_eq!(decode_batch(&again).ok().map(|r| encode_batch(&r)), Some(again));
    }
});
