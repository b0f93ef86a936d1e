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

/// Runs `turingwatch distribute` until SIGTERM/SIGINT, then cancels its scraper jobs; with
/// `metrics_bind`, serves its `/metrics` there.
pub fn run(config: &Config, options: &DistributeOptions, metrics_bind: Option<&str>) -> anyhow::Result<ExitCode> {
    let system = actix::System::new();
    system.block_on(async {
        let stop = signals::listen(None, SecondStop::Ignore);
        let metrics = Arc::new(Metrics::default());
        let http = match metrics_bind {
            Some(bind) => Some(serve_metrics(bind, metrics.clone())?),
            None => None,
        };
        let allocator = allocator::start(Arc::new(config.clone()), options.clone(), metrics);
        stop.requested().await;
        tracing::info!("stopping: cancelling our scraper jobs");
        let _ = allocator.send(CancelScrapers).await;
        if let Some(http) = http {
            http.stop(true).await;
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Serves `GET /metrics` on `bind` until the returned handle stops it.
fn serve_metrics(bind: &str, metrics: Arc<Metrics>) -> anyhow::Result<actix_web::dev::ServerHandle> {
    use anyhow::Context as _;
    let server = actix_web::HttpServer::new(move || {
        let metrics = metrics.clone();
        actix_web::App::new().route(
            "/metrics",
            actix_web::web::get().to(move || {
                let text = metrics.render(crate::clock::unix_now());
                async move { actix_web::HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text) }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(bind)
    .with_context(|| format!("binding the distributor's metrics listener to {bind} (--metrics-bind)"))?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    tracing::info!(%bind, "metrics listening");
    Ok(handle)
}
