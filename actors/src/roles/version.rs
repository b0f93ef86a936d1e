//! `turingwatch version`: the program's version and the store schema it writes.

use std::process::ExitCode;

/// Prints the version and the store schema.
pub fn run() -> ExitCode {
    println!("turingwatch {}", env!("CARGO_PKG_VERSION"));
    println!("store schema {}", crate::store::CURRENT_SCHEMA);
    ExitCode::SUCCESS
}
