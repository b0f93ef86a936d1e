//! The `distribute` role: the allocator (`actors/allocator.rs`) on its own, placing scraper
//! jobs until SIGTERM/SIGINT, then cancelling them.

use crate::actors::allocator;
use crate::actors::messages::CancelScrapers;
use crate::actors::signals::{self, SecondStop};
use crate::distribution::DistributeOptions;
use crate::metrics::Metrics;
use std::process::ExitCode;
use std::sync::Arc;
use turingwatch_config::Config;

/// Runs `turingwatch distribute` until SIGTERM/SIGINT, then cancels its scraper jobs.
pub fn run(config: &Config, options: &DistributeOptions) -> anyhow::Result<ExitCode> {
    let system = actix::System::new();
    system.block_on(async {
        let stop = signals::listen(None, SecondStop::Ignore);
        let allocator = allocator::start(Arc::new(config.clone()), options.clone(), Arc::new(Metrics::default()));
        stop.requested().await;
        tracing::info!("stopping: cancelling our scraper jobs");
        let _ = allocator.send(CancelScrapers).await;
    });
    Ok(ExitCode::SUCCESS)
}
