//! The `server` role: the server's actors and HTTP (`actors/system.rs`) in an actix System,
//! until SIGTERM/SIGINT.

use crate::distribution::DistributeOptions;
use std::process::ExitCode;
use turingwatch_config::Config;

/// Runs `turingwatch server` until SIGTERM/SIGINT. `distribute` is what the allocation actor
/// hands scraper jobs when it runs inside the server (`[distributor] in_server`).
pub fn run(config: Config, distribute: DistributeOptions) -> anyhow::Result<ExitCode> {
    let system = actix::System::new();
    match system.block_on(crate::actors::system::serve(config, distribute)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) => {
            // Dropping the System now would drop actors that have not started yet, and actix
            // panics doing so ("no reactor running"), hiding this error: say it first, and let
            // the process end without that drop.
            tracing::error!(error = %format!("{err:#}"), "server stopped");
            std::mem::forget(system);
            Err(err)
        }
    }
}
