//! The reporter actor (scrape role): owns the node's spool and sends it to the server.
//!
//! Each `SubmitSamples` from the sampler becomes one report with a fresh random id, written to
//! the spool first and then sent, oldest first, with a MUNGE credential bound to its bytes. A
//! report leaves the spool only when the server answered 200 (after its commit) or refused it
//! for good (4xx other than 401/408/429: resending would not help); a refused report is set
//! aside in `<spool>/rejected/` (bounded, `wire::spool`), counted, and the status and the
//! server's reason are logged once per distinct answer. Unreachable server, 401, 408, 429
//! or 5xx: it stays, and the reporter tries again after a bounded exponential backoff with
//! jitter (and with every new report); what is left at the end is sent by the next scraper run
//! on this node. The server's `(sender, id)` check makes a resend harmless, so data arrives
//! exactly once. Sending blocks (HTTP, `munge`), so it runs on the blocking pool, one flush at
//! a time (the mailbox waits meanwhile).
//!
//! A spool that cannot be listed is a failure it cannot handle: it stops, and its supervisor
//! restarts it after a growing delay; the restart opens the spool again (creating its
//! directory), and the reports in it are sent then.

use super::messages::{ReporterStats, SubmitSamples};
use super::supervision::Restarts;
use crate::backoff::Backoff;
use crate::clock::unix_now;
use crate::munge::{encode_credential, CREDENTIAL_HEADER};
use crate::wire::format::{encode_batch, Batch, StepBatch, VERSION};
use crate::wire::send::post;
use crate::wire::spool::{Spool, SpoolError};
use crate::wire::INGEST_PATH;
use actix::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

/// First wait before a report the server did not take is sent again.
const RETRY_INITIAL: Duration = Duration::from_secs(5);
/// Longest wait between two sends of the spool.
const RETRY_MAX: Duration = Duration::from_secs(300);

/// Where reports go.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The node the reports are from.
    pub node: String,
    /// Server URL (`http://host:port`).
    pub server: String,
    /// Program that makes MUNGE credentials (`[ingest] munge_command`).
    pub munge: String,
}

/// The reporter actor.
pub struct Reporter {
    /// The spool; taken while a flush runs on the blocking pool.
    spool: Option<Spool>,
    spool_dir: PathBuf,
    spool_max_bytes: u64,
    to: Destination,
    sent: u64,
    left_in_spool: usize,
    rejected: u64,
    /// Refusals already logged at error level (status and reason), so a server refusing every
    /// report for the same reason logs it once.
    refusals_logged: std::collections::BTreeSet<String>,
    retry: Backoff,
    retry_timer: Option<SpawnHandle>,
    /// The run ends: no more retries.
    finished: bool,
    restarts: Restarts,
}

impl Reporter {
    /// A reporter over an opened `spool`; `restarts` counts its restarts.
    pub fn new(spool: Spool, spool_max_bytes: u64, to: Destination, restarts: Restarts) -> Reporter {
        Reporter {
            spool_dir: spool.dir().to_path_buf(),
            spool: Some(spool),
            spool_max_bytes,
            to,
            sent: 0,
            left_in_spool: 0,
            rejected: 0,
            refusals_logged: std::collections::BTreeSet::new(),
            retry: Backoff::new(RETRY_INITIAL, RETRY_MAX),
            retry_timer: None,
            finished: false,
            restarts,
        }
    }

    fn stats(&self) -> ReporterStats {
        ReporterStats { sent: self.sent, left_in_spool: self.left_in_spool, rejected: self.rejected }
    }

    /// Spools a report of `steps` (when there are any), then sends the spool; the mailbox
    /// waits until that is done.
    fn flush(&mut self, steps: Vec<StepBatch>) -> impl ActorFuture<Self, Output = ReporterStats> {
        let spool = self.spool.take();
        let (dir, max, to) = (self.spool_dir.clone(), self.spool_max_bytes, self.to.clone());
        let mut logged = std::mem::take(&mut self.refusals_logged);
        let work = tokio::task::spawn_blocking(move || {
            let mut spool = match spool {
                Some(spool) => spool,
                None => match Spool::open(&dir, max) {
                    Ok(spool) => spool,
                    Err(err) => return (None, Err(err), logged),
                },
            };
            if !steps.is_empty() {
                spool_report(&mut spool, &to, steps);
            }
            let outcome = send_spool(&mut spool, &to, &mut logged);
            (Some(spool), outcome, logged)
        });
        work.into_actor(self).map(|result, act, ctx| {
            let (spool, outcome) = match result {
                Ok((spool, outcome, logged)) => {
                    act.refusals_logged = logged;
                    (spool, outcome)
                }
                Err(join) => {
                    (None, Err(SpoolError::Io { path: act.spool_dir.clone(), source: std::io::Error::other(join) }))
                }
            };
            act.spool = spool;
            match outcome {
                Ok(flushed) => {
                    act.sent += flushed.sent;
                    act.rejected += flushed.rejected;
                    act.left_in_spool = flushed.left;
                    act.restarts.succeeded();
                    if flushed.left == 0 {
                        act.retry.reset();
                    } else {
                        act.retry_later(ctx);
                    }
                }
                Err(err) => act.restarts.fail(ctx, &format_args!("the spool is unusable: {err}")),
            }
            act.stats()
        })
    }

    /// Sends the spool again after the next backoff delay (unless the run ends).
    fn retry_later(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.retry_timer.take() {
            ctx.cancel_future(handle);
        }
        if self.finished {
            return;
        }
        let wait = self.retry.next_delay();
        tracing::debug!(wait_secs = wait.as_secs_f64(), "sending the spool again later");
        self.retry_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.retry_timer = None;
            let flush = act.flush(Vec::new()).map(|_, _, _| ());
            ctx.wait(flush);
        }));
    }
}

impl Actor for Reporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Send what earlier runs (or the run before a restart) left in the spool.
        let delay = self.restarts.take_delay();
        ctx.run_later(delay, |act, ctx| {
            let flush = act.flush(Vec::new()).map(|_, _, _| ());
            ctx.wait(flush);
        });
    }
}

impl Supervised for Reporter {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The spool is opened again (its directory created) by the next flush.
        self.spool = None;
        self.retry_timer = None;
        self.restarts.restarting();
    }
}

impl Handler<SubmitSamples> for Reporter {
    type Result = AtomicResponse<Self, ReporterStats>;

    fn handle(&mut self, msg: SubmitSamples, ctx: &mut Self::Context) -> Self::Result {
        if msg.last {
            self.finished = true;
        }
        if let Some(handle) = self.retry_timer.take() {
            ctx.cancel_future(handle);
        }
        AtomicResponse::new(Box::pin(self.flush(msg.steps)))
    }
}

/// Makes a report of `steps` and spools it; if it cannot be spooled, sends it directly.
fn spool_report(spool: &mut Spool, to: &Destination, steps: Vec<StepBatch>) {
    let report = Batch { version: VERSION, id: rand::random(), node: to.node.clone(), made_at: unix_now(), steps };
    let bytes = encode_batch(&report);
    if let Err(err) = spool.put(report.made_at, report.id, &bytes) {
        tracing::error!(error = %err, "cannot spool a report; sending it directly");
        let _ = send(to, &bytes);
    }
}

/// What a send of the spool did.
struct Flushed {
    sent: u64,
    left: usize,
    rejected: u64,
}

/// Sends spooled reports oldest first; stops at the first one the server did not take. A report
/// refused for good is set aside (`rejected/`); each distinct refusal is logged at error level
/// once (`logged`), later ones at debug level.
fn send_spool(
    spool: &mut Spool,
    to: &Destination,
    logged: &mut std::collections::BTreeSet<String>,
) -> Result<Flushed, SpoolError> {
    let entries = spool.entries()?;
    let mut flushed = Flushed { sent: 0, left: entries.len(), rejected: 0 };
    for (path, _) in entries {
        let Ok(bytes) = spool.read(&path) else { continue };
        match send(to, &bytes) {
            Delivery::Taken => {
                flushed.sent += 1;
                let _ = spool.remove(&path);
            }
            Delivery::Refused { status, reason } => {
                flushed.rejected += 1;
                let aside = spool.set_aside(&path, status);
                let kept_in = spool.dir().join(crate::wire::spool::REJECTED_DIR);
                let key = format!("{status} {reason}");
                if logged.len() < 64 && logged.insert(key) {
                    tracing::error!(
                        status,
                        reason = %reason,
                        server = %to.server,
                        kept_in = %kept_in.display(),
                        "the server refused a report for good; set aside, not resent (further refusals like this one are only counted)"
                    );
                } else {
                    tracing::debug!(status, reason = %reason, "report refused again; set aside");
                }
                match aside {
                    Ok(done) if done.dropped > 0 => tracing::warn!(
                        dropped = spool.rejected_dropped(),
                        "refused reports over their bound: oldest dropped"
                    ),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::error!(error = %err, "cannot set a refused report aside; dropped");
                        let _ = spool.remove(&path);
                    }
                }
            }
            Delivery::Later(why) => {
                tracing::warn!(server = %to.server, why = %why, "server did not take the report; kept in the spool");
                break;
            }
        }
        flushed.left -= 1;
    }
    Ok(flushed)
}

fn send(to: &Destination, bytes: &[u8]) -> Delivery {
    let credential = match encode_credential(&to.munge, bytes) {
        Ok(c) => c,
        Err(err) => return Delivery::Later(err.to_string()),
    };
    match post(&to.server, INGEST_PATH, &[(CREDENTIAL_HEADER, &credential)], bytes, Duration::from_secs(30)) {
        Ok(answer) if answer.status == 200 => Delivery::Taken,
        // 401 may be a clock or munged hiccup on either side: worth a resend with a new credential.
        // 408: the body was too slow this time; 429: sent too fast. Both may pass later.
        Ok(answer) if matches!(answer.status, 401 | 408 | 429) || answer.status >= 500 || answer.status < 400 => {
            Delivery::Later(format!("HTTP {}: {}", answer.status, answer.body))
        }
        Ok(answer) => Delivery::Refused { status: answer.status, reason: answer.body },
        Err(err) => Delivery::Later(err.to_string()),
    }
}

/// What the server did with one report.
enum Delivery {
    Taken,
    Refused { status: u16, reason: String },
    Later(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::tests_support::{eventually, scratch};
    use crate::metrics::Metrics;
    use std::sync::Arc;

    /// The spool directory disappears: listing it fails, the reporter stops, its supervisor
    /// restarts it (counted), and the restart opens the spool again, so the next report is
    /// spooled (nothing listens on the server port, so it stays there).
    #[actix_rt::test]
    async fn the_reporter_is_restarted_when_its_spool_is_gone() {
        let dir = scratch("reporter-restart");
        let spool_dir = dir.join("spool").join("n1");
        let spool = Spool::open(&spool_dir, 1 << 20).unwrap();
        let metrics = Arc::new(Metrics::default());
        let restarts = Restarts::new("reporter", Duration::from_millis(5), Duration::from_millis(20), metrics.clone());
        let to = Destination { node: "n1".into(), server: "http://127.0.0.1:9".into(), munge: "true".into() };
        std::fs::remove_dir_all(&spool_dir).unwrap();
        let addr = actix::Supervisor::start(move |_| Reporter::new(spool, 1 << 20, to, restarts));
        let restarted = eventually(Duration::from_secs(10), || metrics.restarts_of("reporter") >= 1).await;
        assert!(restarted, "the reporter was not restarted");
        let stats = addr.send(SubmitSamples { steps: vec![step()], last: true }).await.unwrap();
        assert_eq!((stats.sent, stats.left_in_spool), (0, 1), "the report waits in the reopened spool");
        assert_eq!(std::fs::read_dir(&spool_dir).unwrap().count(), 1);
    }

    /// A server answering every request with `status` and `body`; returns its URL.
    fn answering(status: u16, body: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 65536];
                let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        url
    }

    fn reporter_for(name: &str, server: String) -> (Addr<Reporter>, PathBuf) {
        let spool_dir = scratch(name).join("spool").join("n1");
        let spool = Spool::open(&spool_dir, 8 << 20).unwrap();
        let metrics = Arc::new(Metrics::default());
        let restarts = Restarts::new("reporter", Duration::from_millis(5), Duration::from_millis(20), metrics);
        let to = Destination { node: "n1".into(), server, munge: "true".into() };
        (Reporter::new(spool, 8 << 20, to, restarts).start(), spool_dir)
    }

    /// A 403 (e.g. a scraper whose user is not a service user) never deletes a report: it is
    /// set aside in `rejected/` and counted, and the next report is not held up by it.
    #[actix_rt::test]
    async fn a_report_refused_for_good_is_set_aside_and_counted() {
        let (addr, spool_dir) =
            reporter_for("reporter-403", answering(403, "forbidden: uid 999 may report only its own jobs"));
        let first = addr.send(SubmitSamples { steps: vec![step()], last: false }).await.unwrap();
        assert_eq!((first.sent, first.left_in_spool, first.rejected), (0, 0, 1));
        let second = addr.send(SubmitSamples { steps: vec![step()], last: true }).await.unwrap();
        assert_eq!((second.sent, second.left_in_spool, second.rejected), (0, 0, 2));
        let aside: Vec<_> = std::fs::read_dir(spool_dir.join("rejected")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(aside.len(), 2, "{aside:?}");
        assert!(aside.iter().all(|p| p.to_str().unwrap().ends_with(".http403.twr")));
        let report = crate::wire::format::decode_batch(&std::fs::read(&aside[0]).unwrap()).unwrap();
        assert_eq!(report.steps.len(), 1, "the refused report is kept whole");
    }

    /// A 503 or 408 is "later": the report stays in the spool, nothing is set aside.
    #[actix_rt::test]
    async fn a_busy_or_slow_answer_keeps_the_report_in_the_spool() {
        for status in [503, 408] {
            let (addr, spool_dir) = reporter_for(&format!("reporter-{status}"), answering(status, "busy"));
            let stats = addr.send(SubmitSamples { steps: vec![step()], last: true }).await.unwrap();
            assert_eq!((stats.sent, stats.left_in_spool, stats.rejected), (0, 1, 0), "HTTP {status}");
            assert!(!spool_dir.join("rejected").exists());
        }
    }

    fn step() -> StepBatch {
        StepBatch {
            job: crate::job::JobId(1),
            step: crate::job::StepId::BATCH,
            samples: Vec::new(),
            gpus: Vec::new(),
            apps: vec!["python3".into()],
        }
    }
}
