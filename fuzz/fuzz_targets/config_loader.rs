//! Any config text and environment gives a config or a clean error — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line, if it looks like NAME=VALUE, doubles as an environment override.
    let env: Vec<(String, String)> = text
        .lines()
        .next()
        .and_then(|l| l.split_once('='))
        .map(|(k, v)| vec![(format!("TURINGWATCH_{k}"), v.to_string())])
        .unwrap_or_default();
    if let Err(err) = turingwatch_config::load_text(Some((text, Path::new("fuzz.toml"))), &env) {
        let _ = err.to_string();
    }
});
