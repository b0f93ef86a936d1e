//! Wiring of the server: opens the store, starts every actor in a fixed order, serves HTTP, and
//! shuts down in order on SIGTERM/SIGINT (the `server` role runs [`serve`] in an actix System).
//!
//! Actors get their collaborators here (as `Addr`/`Recipient` values), never from a global
//! registry, so tests can wire probes instead. The HTTP app is composed from the parts that own
//! routes (the web crate's report site and API, the ingest endpoint, the client API) with `App::configure`.

use super::messages::CancelScrapers;
use super::shared::Shared;
use super::signals::{self, SecondStop};
use super::{accounting, allocator, client_api, exporter, ingest, mailer, rollover};
use crate::distribution::DistributeOptions;
use crate::metrics::Metrics;
use crate::store::Store;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use turingwatch_config::Config;

/// Runs the server until SIGTERM/SIGINT (inside an actix System). `distribute` is what the
/// allocation actor hands scraper jobs when it runs inside the server (`[distributor] in_server`).
pub async fn serve(config: Config, distribute: DistributeOptions) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let shared = Shared { config: Arc::new(config), store, metrics: Arc::new(Metrics::default()) };
    tracing::info!(path = %shared.store.path().display(), "store open");

    // Periods and mail: the accounting importer publishes `JobsImported` to the rollover, which
    // publishes `PeriodClosed` to the mailer.
    let mailer = mailer::Mailer::new(shared.store.clone(), shared.config.clone())
        .context("setting up the mailer ([mail])")?
        .with_metrics(shared.metrics.clone());
    let mailer = actix::Supervisor::start(move |_| mailer);
    let stop = signals::listen(Some(mailer.clone().recipient()), SecondStop::Exit);
    watch_scraper_jobs(&shared);
    prune_reports_seen(&shared);
    apply_retention(&shared);
    let cycle = crate::period::cycle::Cycle::new(&shared.config, crate::clock::unix_now())
        .context("setting up analysis periods ([analysis], [mail] templates_dir)")?;
    let rollover =
        rollover::Rollover::new(shared.store.clone(), cycle, vec![mailer.clone().recipient()], shared.metrics.clone());
    let rollover = actix::Supervisor::start(move |_| rollover);
    // The accounting importer publishes `JobsImported` to the rollover and, when the
    // distributor runs in the server, to the allocation actor (nodes with running jobs).
    let allocator = shared
        .config
        .distributor
        .in_server
        .then(|| allocator::start(shared.config.clone(), distribute, shared.metrics.clone()));
    let mut subscribers = vec![rollover.clone().recipient()];
    subscribers.extend(allocator.iter().map(|a| a.clone().recipient()));
    let _accounting = accounting::start(&shared, subscribers);

    let bind = shared.config.web.bind.clone();
    let http_shared = shared.clone();
    let backend: Arc<dyn turingwatch_web::backend::Backend> =
        Arc::new(crate::web_backend::StoreBackend::new(Arc::clone(&shared.store), &shared.config));
    let web_state =
        actix_web::web::Data::new(turingwatch_web::routes::WebState::new(&shared.config.web, Arc::clone(&backend)));
    // Export: the ingest handler hands each commit's rows to the exporter's intake.
    let export = &shared.config.export;
    let intake =
        Arc::new(crate::export::Intake::new(usize::try_from(export.max_buffered_samples).unwrap_or(usize::MAX)));
    let live: exporter::LiveView = Arc::default();
    let bearer = exporter::read_token(&export.bearer_token_file, "bearer_token_file")?;
    let jobs_token = exporter::read_token(&export.jobs_token_file, "jobs_token_file")?;
    let jobs_access = actix_web::web::Data::new(exporter::JobsAccess::new(&shared.config, jobs_token));
    let exporter = exporter::Exporter::new(shared.clone(), intake.clone(), live.clone(), bearer);
    let _exporter = actix::Supervisor::start(move |_| exporter);
    let live = actix_web::web::Data::new(live);
    let ingest_state = actix_web::web::Data::new(
        ingest::IngestState::new(&shared.config.ingest).with_export(intake.clone()).with_group_commit(
            super::group_commit::GroupCommitter::start(Arc::clone(&shared.store), ingest::MAX_IN_FLIGHT)
                .context("starting the report writer thread")?,
        ),
    );
    let client_state = actix_web::web::Data::new(client_api::ClientApiState::new(&shared.config.ingest, backend));
    let server = actix_web::HttpServer::new(move || {
        let shared = http_shared.clone();
        actix_web::App::new()
            // Browsers must take every answer as the type it says it is (JSON, text, HTML).
            .wrap(actix_web::middleware::DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
            .app_data(actix_web::web::Data::new(shared.clone()))
            .route("/healthz", actix_web::web::get().to(|| async { "ok\n" }))
            .route("/metrics", actix_web::web::get().to(metrics_endpoint))
            .app_data(live.clone())
            .app_data(jobs_access.clone())
            .route("/metrics/jobs", actix_web::web::get().to(exporter::jobs_endpoint))
            .configure(ingest::configure(ingest_state.clone()))
            .configure(client_api::configure(client_state.clone()))
            .configure(turingwatch_web::routes::mount(web_state.clone()))
    })
    .workers(2)
    .shutdown_timeout(10)
    .disable_signals()
    .bind(&bind)
    .with_context(|| format!("binding the web listener to {bind} ([web] bind)"))?
    .run();
    let handle = server.handle();
    tracing::info!(%bind, "listening");
    let server_task = actix_web::rt::spawn(server);

    stop.requested().await;
    tracing::info!("shutting down: no new reports, finishing what is in flight");
    handle.stop(true).await;
    let _ = server_task.await;
    if let Some(allocator) = allocator {
        let cancelled = tokio::time::timeout(Duration::from_secs(30), allocator.send(CancelScrapers));
        if cancelled.await.is_err() {
            tracing::warn!("cancelling scraper jobs took over 30 s; `scancel -n <job_name>` cleans up");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// `GET /metrics`: Prometheus text.
async fn metrics_endpoint(shared: actix_web::web::Data<Shared>) -> actix_web::HttpResponse {
    if let Ok(meta) = std::fs::metadata(shared.store.path()) {
        shared.metrics.store_size_bytes.set(meta.len());
    }
    shared.metrics.store_healthy.set(u64::from(shared.store.healthy()));
    shared.metrics.store_reopens.set(shared.store.reopen_count());
    let now = crate::clock::unix_now();
    actix_web::HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(shared.metrics.render(now))
}

/// Opens the store off the async threads (redb's open can take a while on a large file).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<Store>> {
    let path = std::path::PathBuf::from(&config.store.path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {} ([store] path)", dir.display()))?;
    }
    let store = actix_web::rt::task::spawn_blocking(move || Store::open(&path))
        .await
        .context("store open task")?
        .context("opening the store ([store] path)")?;
    Ok(Arc::new(store))
}

/// How long a report's `(sender, report id)` mark is kept: a scraper resends a report only
/// while it is spooled, and a later resend merges into the same samples anyway.
pub const REPORTS_SEEN_KEEP: Duration = Duration::from_secs(7 * 86_400);

/// How often old report marks are pruned.
const REPORTS_SEEN_PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Prunes the store's `reports_seen` marks older than [`REPORTS_SEEN_KEEP`] every hour (its
/// growth is otherwise one entry per report, forever). A failure is logged and retried next
/// time; after a disk-full error this call is also what reopens an idle store.
fn prune_reports_seen(shared: &Shared) {
    let store = shared.store.clone();
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(REPORTS_SEEN_PRUNE_EVERY);
        loop {
            tick.tick().await;
            let store = store.clone();
            let before = crate::clock::unix_now().saturating_sub(REPORTS_SEEN_KEEP.as_secs());
            match actix_web::rt::task::spawn_blocking(move || store.prune_reports_seen(before)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(removed)) => tracing::info!(removed, "old report marks pruned"),
                Ok(Err(err)) => tracing::warn!(error = %err, "pruning report marks failed"),
                Err(err) => tracing::warn!(error = %err, "pruning task failed"),
            }
        }
    });
}

/// Runs the store's retention pass (`store::retention`) every `[store] retention_interval`:
/// jobs past `[store] job_retention` go with their rows, aged raw blocks become summaries, old
/// summaries go. The pass commits in small chunks, so
/// ingest waits at most one chunk. A failed pass is logged and counted; what it committed stays,
/// nothing uncommitted was deleted, and the next tick retries after a doubled wait (up to an
/// hour), so a broken disk is not hammered.
fn apply_retention(shared: &Shared) {
    let store = shared.store.clone();
    let metrics = shared.metrics.clone();
    let cfg = &shared.config;
    let policy = crate::store::RetentionPolicy::new(
        cfg.store.raw_retention_secs(&cfg.analysis),
        cfg.store.summary_retention.as_secs(),
    )
    .with_job_retention(cfg.store.job_retention_secs());
    let every = cfg.store.retention_interval.get();
    actix_web::rt::spawn(async move {
        let mut wait = every;
        loop {
            tokio::time::sleep(wait).await;
            let store = store.clone();
            let started = std::time::Instant::now();
            let now = crate::clock::unix_now();
            let outcome = actix_web::rt::task::spawn_blocking(move || store.apply_retention(now, &policy)).await;
            metrics.retention_last_pass_ms.set(started.elapsed().as_millis() as u64);
            match outcome {
                Ok(Ok(stats)) => {
                    wait = every;
                    metrics.retention_series_summarised_total.add(stats.series_summarised);
                    metrics.retention_raw_blocks_deleted_total.add(stats.raw_blocks_deleted);
                    metrics.retention_summaries_deleted_total.add(stats.summaries_deleted);
                    metrics.retention_jobs_deleted_total.add(stats.jobs_deleted);
                    metrics.retention_corrupt_job_blocks_total.add(stats.corrupt_job_blocks);
                    if stats.series_summarised + stats.summaries_deleted + stats.jobs_deleted > 0
                        || stats.corrupt_series + stats.corrupt_job_blocks > 0
                    {
                        tracing::info!(?stats, "retention pass");
                    }
                }
                Ok(Err(err)) => {
                    metrics.retention_failures_total.inc();
                    wait = (wait * 2).min(Duration::from_secs(3_600)).max(every);
                    tracing::warn!(error = %err, retry_in = ?wait, "retention pass failed");
                }
                Err(err) => {
                    metrics.retention_failures_total.inc();
                    wait = (wait * 2).min(Duration::from_secs(3_600)).max(every);
                    tracing::warn!(error = %err, "retention task failed");
                }
            }
        }
    });
}

/// How often the server counts scraper jobs for `/metrics`.
const SCRAPER_JOBS_POLL: Duration = Duration::from_secs(5);

/// Keeps the `scraper_jobs{state}` gauges current from squeue (scraper jobs are named
/// `[distributor] job_name`, whichever distributor placed them). A failing squeue keeps the old
/// values and is logged at debug level: the importer already reports SLURM outages.
fn watch_scraper_jobs(shared: &Shared) {
    let slurm = crate::slurm::SlurmRunner::new(&shared.config.slurm);
    let name = shared.config.distributor.job_name.clone();
    let metrics = shared.metrics.clone();
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(SCRAPER_JOBS_POLL);
        loop {
            tick.tick().await;
            match crate::slurm::queue::jobs_named(&slurm, &name).await {
                Ok(jobs) => {
                    let count = |state: &str| jobs.iter().filter(|j| j.state == state).count() as u64;
                    metrics.scraper_jobs_pending.set(count("PENDING"));
                    metrics.scraper_jobs_running.set(count("RUNNING"));
                }
                Err(err) => tracing::debug!(error = %err, "squeue for scraper jobs failed"),
            }
        }
    });
}
