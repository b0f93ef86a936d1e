//! Delivering one outbox entry: the exactly-once protocol around one transport call.
//!
//! 1. `queued → sending` (attempts + 1) is committed before the transport is touched;
//! 2. the message, carrying the entry's stored Message-ID, goes to the transport;
//! 3. success: `sending → sent` is committed; failure: back to `queued` with a backoff, or
//!    `failed` after `max_attempts`.
//!
//! A crash between 1 and 3 leaves `sending`, which `outbox::recover` turns into `uncertain`
//! at the next start (see `outbox.rs` for why at most once). Used by the mailer actor and by
//! `turingwatch mail`.

use super::outbox::{OutboxEntry, OutboxState};
use super::send::{build_message, MailError, Outgoing, Transport};
use crate::clock::unix_now;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use turingwatch_config::Config;

/// First retry delay; doubles per attempt up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_RETRY: Duration = Duration::from_secs(6 * 3_600);

/// DeliveryOutcome could not even be attempted.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What happened to an outbox entry when it was due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent,
    /// The transport failed; it will be retried at `next_attempt_at` (unix seconds).
    Retry {
        error: String,
        next_attempt_at: u64,
    },
    /// Failed for good (too many attempts, or no report to send).
    Failed {
        error: String,
    },
    /// Another sender took it, or its state does not allow sending.
    Skipped,
    OptedOut,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, DeliverError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Delay before retry number `attempts` (1 = after the first failure).
pub fn retry_delay(attempts: u32) -> Duration {
    let factor = 1u32.checked_shl(attempts.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
    FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY)
}

/// Sends one entry, allowed from the states in `from` (the mailer: `queued`; by hand: more).
pub async fn deliver(
    store: Arc<Store>,
    config: &Config,
    transport: &Transport,
    entry: &OutboxEntry,
    from: &'static [OutboxState],
    now: u64,
) -> Result<DeliveryOutcome, DeliverError> {
    let (period, user) = (entry.period_start, entry.user.clone());
    if config.mail.opt_out.contains(&user) {
        let s = store.clone();
        blocking(move || s.outbox_transition(period, &user, from, |e| e.state = OutboxState::OptedOut)).await?;
        return Ok(DeliveryOutcome::OptedOut);
    }
    let s = store.clone();
    let u = user.clone();
    let Some(report) = blocking(move || s.report(period, &u)).await? else {
        let s = store.clone();
        let error = "no stored report for this period and user".to_string();
        let e2 = error.clone();
        blocking(move || {
            s.outbox_transition(period, &user, from, |e| {
                e.state = OutboxState::Failed;
                e.last_error = e2;
                e.updated_at = now;
            })
        })
        .await?;
        return Ok(DeliveryOutcome::Failed { error });
    };
    let s = store.clone();
    let u = user.clone();
    let Some(sending) = blocking(move || {
        s.outbox_transition(period, &u, from, |e| {
            e.state = OutboxState::Sending;
            e.attempts += 1;
            e.updated_at = now;
        })
    })
    .await?
    else {
        return Ok(DeliveryOutcome::Skipped);
    };
    let outgoing = Outgoing {
        to: &sending.to,
        subject: &config.mail.subject,
        html: &report.html,
        text: &report.text,
        message_id: &sending.message_id,
    };
    let result: Result<(), MailError> = match build_message(&config.mail, &outgoing) {
        Ok(message) => transport.send(message).await,
        Err(err) => Err(err),
    };
    let s = store.clone();
    match result {
        Ok(()) => {
            let done = unix_now();
            blocking(move || {
                s.outbox_transition(period, &user, &[OutboxState::Sending], |e| {
                    e.state = OutboxState::Sent;
                    e.sent_at = Some(done);
                    e.updated_at = done;
                    e.last_error.clear();
                })
            })
            .await?;
            Ok(DeliveryOutcome::Sent)
        }
        Err(err) => {
            let error = err.to_string();
            let give_up = sending.attempts >= config.mail.max_attempts.max(1);
            let next_attempt_at = now + retry_delay(sending.attempts).as_secs();
            let e2 = error.clone();
            blocking(move || {
                s.outbox_transition(period, &user, &[OutboxState::Sending], |e| {
                    e.state = if give_up { OutboxState::Failed } else { OutboxState::Queued };
                    e.next_attempt_at = next_attempt_at;
                    e.last_error = e2;
                    e.updated_at = now;
                })
            })
            .await?;
            Ok(if give_up {
                DeliveryOutcome::Failed { error }
            } else {
                DeliveryOutcome::Retry { error, next_attempt_at }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_to_a_cap() {
        let secs: Vec<u64> = [1, 2, 3, 10, 40].iter().map(|a| retry_delay(*a).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 30 << 9, 6 * 3_600]);
    }
}
