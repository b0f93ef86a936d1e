//! The one signal handler of the long-running roles (server, distribute, scrape).
//!
//! One task owns SIGTERM, SIGINT and (when a mailer is given) SIGUSR1: the first SIGTERM or
//! SIGINT resolves [`Stop`] (the role then shuts down in order); SIGUSR1 sends the mailer
//! `SendDue` (`[mail] schedule = "on_signal"`, sent by `systemd/turingwatch.mail.timer`). With
//! [`SecondStop::Exit`] a second SIGTERM/SIGINT exits at once: every write the store
//! acknowledged is already durable, so nothing committed is lost.

use super::messages::SendDue;
use actix::Recipient;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;

/// What a second SIGTERM/SIGINT does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondStop {
    /// Exit with status 1 at once (the server).
    Exit,
    /// Nothing more: the shutdown under way finishes (scraper, distributor).
    Ignore,
}

/// Resolves on the first SIGTERM or SIGINT.
pub struct Stop(oneshot::Receiver<()>);

impl Stop {
    /// Waits for the stop request. If the handler could not be installed, waits forever.
    pub async fn requested(self) {
        if self.0.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Installs the handler (on the current actix/tokio runtime); `mailer` hears SIGUSR1.
pub fn listen(mailer: Option<Recipient<SendDue>>, second: SecondStop) -> Stop {
    let (tx, rx) = oneshot::channel();
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        drop(tx);
        return Stop(rx);
    };
    let mut usr1 = match &mailer {
        Some(_) => match signal(SignalKind::user_defined1()) {
            Ok(s) => Some(s),
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGUSR1; on_signal mail will not be sent");
                None
            }
        },
        None => None,
    };
    actix_rt::spawn(async move {
        let mut tx = Some(tx);
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                Some(()) = recv(&mut usr1) => {
                    if let Some(mailer) = &mailer {
                        mailer.do_send(SendDue);
                    }
                    continue;
                }
            }
            match tx.take() {
                Some(tx) => {
                    let _ = tx.send(());
                }
                None if second == SecondStop::Exit => {
                    tracing::warn!("second signal: exiting now");
                    std::process::exit(1);
                }
                None => tracing::info!("stop already under way"),
            }
        }
    });
    Stop(rx)
}

async fn recv(signal: &mut Option<Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
