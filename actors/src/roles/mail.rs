//! `turingwatch mail`: preview or (re)send a period's report mails by hand, through the same
//! outbox and delivery as the server's mailer (so a mail is still sent at most once) — on the
//! running server through its admin API, or on the store itself when no server runs.

use super::{open_store, runtime};
use crate::admin::{MailRequest, Outcome};
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
    /// Server to run it on (default [scrape] server_url, else http://<web.bind>); where none
    /// answers, the store is opened directly.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// `turingwatch mail`: previews or (re)sends a period's report mails by hand.
pub fn run(config: &Config, args: &MailArgs) -> anyhow::Result<ExitCode> {
    let req = MailRequest {
        period: args.period.clone(),
        users: args.user.clone(),
        dry_run: args.dry_run,
        resend: args.resend,
    };
    let body = serde_json::to_vec(&req)?;
    let path = crate::client::ADMIN_MAIL_PATH;
    let outcome: Outcome = match super::through_server(config, args.server.as_deref(), path, Some(&body), "mail")? {
        Some(outcome) => outcome,
        None => {
            let store = Arc::new(open_store(config)?);
            // The SMTP pool spawns on (and is dropped into) the runtime: enter it first.
            let rt = runtime()?;
            let _context = rt.enter();
            rt.block_on(crate::admin::mail(config, store, &req))?
        }
    };
    print!("{}", outcome.text);
    Ok(if outcome.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
