//! Report mails: rendering (pure), the persistent outbox (exactly-once bookkeeping in the store)
//! and the transports (SMTP, sendmail, file); and the holdout, whose mails are held back.

pub mod deliver;
pub mod holdout;
pub mod outbox;
pub mod prefs;
pub mod render;
pub mod send;
