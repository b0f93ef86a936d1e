//! Log setup: one line per event through tracing, text or JSON, journald-friendly.
//!
//! Colour only on a terminal (journald would store the escape codes); `RUST_LOG` overrides the
//! configured level. Logs go to stderr so stdout stays for command output.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use turingwatch_config::LogFormat;

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    // A subscriber already set (tests) is fine.
    drop(result);
}
