//! Report mails: rendering (pure) and the persistent outbox. (Issue #5.)
