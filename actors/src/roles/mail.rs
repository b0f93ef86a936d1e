//! `turingwatch mail`: preview or (re)send a period's report mails by hand, through the same
//! outbox and delivery as the server's mailer (so a mail is still sent at most once).

use super::{open_store, resolve_period, runtime};
use crate::analysis::period::PeriodSpec;
use crate::clock::unix_now;
use crate::mail::deliver::{deliver, DeliveryOutcome};
use crate::mail::outbox::{self, OutboxState};
use crate::mail::send::{build_message, Outgoing, Transport};
use std::process::ExitCode;
use std::sync::Arc;
use turingwatch_config::Config;

/// `turingwatch mail` options.
#[derive(Debug, clap::Args)]
pub struct MailArgs {
    /// The period: `previous` (default), `current`, or a period start (unix seconds).
    #[arg(long, default_value = "previous")]
    pub period: String,
    /// Only these users (repeat the option for several).
    #[arg(long)]
    pub user: Vec<String>,
    /// Print the messages (MIME) instead of sending them.
    #[arg(long)]
    pub dry_run: bool,
    /// Send again even if the outbox says sent or uncertain.
    #[arg(long)]
    pub resend: bool,
}

/// `turingwatch mail`: previews or (re)sends a period's report mails by hand.
pub fn run(config: &Config, args: &MailArgs) -> anyhow::Result<ExitCode> {
    let spec = PeriodSpec::from_config(&config.analysis)?;
    let period = resolve_period(&spec, &args.period)?;
    let store = Arc::new(open_store(config)?);
    let mut users = store.report_users(period.start)?;
    if !args.user.is_empty() {
        for wanted in &args.user {
            anyhow::ensure!(users.contains(wanted), "no report for user {wanted} in period {}", period.start);
        }
        users.retain(|u| args.user.contains(u));
    }
    let mut reports = Vec::new();
    for user in &users {
        if let Some(r) = store.report(period.start, user)? {
            if r.has_findings || args.user.contains(user) {
                reports.push(r);
            }
        }
    }
    if reports.is_empty() {
        println!("period {}: no mail to send", period.start);
        return Ok(ExitCode::SUCCESS);
    }
    let recipients: Vec<(String, String)> =
        reports.iter().map(|r| (r.user.clone(), crate::mail::render::recipient(config, &r.user))).collect();
    if args.dry_run {
        for r in &reports {
            let to = crate::mail::render::recipient(config, &r.user);
            let message_id = outbox::message_id(period.start, &r.user, &config.mail.from);
            let mail = Outgoing {
                to: &to,
                subject: &config.mail.subject,
                html: &r.html,
                text: &r.text,
                message_id: &message_id,
            };
            let message = build_message(&config.mail, &mail)?;
            println!("{}", String::from_utf8_lossy(&message.formatted()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    outbox::queue(&store, period.start, &recipients, &config.mail.from, &config.mail.opt_out, unix_now())?;
    // The SMTP pool spawns on (and is dropped into) the runtime: enter it first, drop it last.
    let rt = runtime()?;
    let _context = rt.enter();
    let transport = Transport::from_config(&config.mail)?;
    let from: &'static [OutboxState] = if args.resend {
        &[OutboxState::Queued, OutboxState::Failed, OutboxState::Uncertain, OutboxState::Sent]
    } else {
        &[OutboxState::Queued, OutboxState::Failed]
    };
    let mut failed = false;
    for (user, to) in &recipients {
        let entry = store.outbox_entries(Some(period.start))?.into_iter().find(|e| e.user == *user);
        let Some(entry) = entry else { continue };
        let outcome = rt.block_on(deliver(store.clone(), config, &transport, &entry, from, unix_now()))?;
        match outcome {
            DeliveryOutcome::Sent => println!("{user}: sent to {to}"),
            DeliveryOutcome::Skipped => println!("{user}: not sent ({:?}; --resend sends it again)", entry.state),
            DeliveryOutcome::OptedOut => println!("{user}: opted out"),
            DeliveryOutcome::Retry { error, .. } | DeliveryOutcome::Failed { error } => {
                failed = true;
                println!("{user}: FAILED: {error}");
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
