//! `turingwatch config`: the effective configuration, where it came from and what the
//! environment overrode.

use std::process::ExitCode;
use turingwatch_config::{Loaded, Source};

/// Prints the effective configuration as TOML, with its sources as comments.
pub fn run(loaded: &Loaded) -> ExitCode {
    match &loaded.source {
        Source::File(path) => println!("# effective configuration from {}", path.display()),
        Source::Defaults => println!("# effective configuration: built-in defaults (no file)"),
    }
    for var in &loaded.overrides {
        println!("# overridden by environment: {var}");
    }
    print!("{}", loaded.config.to_toml());
    ExitCode::SUCCESS
}
