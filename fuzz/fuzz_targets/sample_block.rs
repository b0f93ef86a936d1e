//! Any stored bytes decode to samples or a clean error — never a panic or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turingwatch::sample::{GpuReading, StepSample};
use turingwatch::store::decode_block;

fuzz_target!(|data: &[u8]| {
    if let Ok(samples) = decode_block::<StepSample>(1_000, data) {
        // What decodes must re-encode to something that decodes to the same samples.
        let again = turingwatch::store::encode_block(1_000, &samples);
        assert_eq!(decode_block::<StepSample>(1_000, &again).ok(), Some(samples));
    }
    let _ = decode_block::<GpuReading>(0, data);
});
