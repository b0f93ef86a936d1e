//! Building the MIME message and handing it to a transport: SMTP (STARTTLS / TLS / auth),
//! the local sendmail program, or `.eml` files in a directory (a dry run).

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSendmailTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;
use turingwatch_config::{MailConfig, MailTransport, SmtpTls};

/// A mail could not be built or handed to its transport.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("bad address {address:?}: {source}")]
    Address { address: String, source: lettre::address::AddressError },
    #[error("cannot build the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("cannot read the SMTP password file {path}: {source}")]
    Password { path: String, source: std::io::Error },
    #[error("the SMTP password file {path} is readable by others (mode {mode:o}); chmod 600 it")]
    PasswordExposed { path: String, mode: u32 },
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("sendmail: {0}")]
    Sendmail(#[from] lettre::transport::sendmail::Error),
    #[error("sendmail did not finish within {0} s (Postfix's postdrop retries forever when it cannot write its maildrop: see systemd/README.md, \"Mail\")")]
    SendmailTimeout(u64),
    #[error("file transport: {0}")]
    File(#[from] lettre::transport::file::Error),
}

/// Reads a secret file, refusing one that its group or others may read.
fn read_secret(path: &str) -> Result<String, MailError> {
    use std::os::unix::fs::MetadataExt;
    let err = |source| MailError::Password { path: path.to_string(), source };
    let mode = std::fs::metadata(path).map_err(err)?.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(MailError::PasswordExposed { path: path.to_string(), mode });
    }
    std::fs::read_to_string(path).map_err(err)
}

fn mailbox(address: &str) -> Result<Mailbox, MailError> {
    address.parse().map_err(|source| MailError::Address { address: address.to_string(), source })
}

/// What a report mail consists of.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub html: &'a str,
    pub text: &'a str,
    pub message_id: &'a str,
}

/// Builds the multipart/alternative message (plain text first, HTML preferred).
pub fn build_message(config: &MailConfig, mail: &Outgoing<'_>) -> Result<Message, MailError> {
    let mut builder = Message::builder()
        .from(mailbox(&config.from)?)
        .to(mailbox(mail.to)?)
        .subject(mail.subject)
        .message_id(Some(mail.message_id.to_string()));
    if !config.reply_to.is_empty() {
        builder = builder.reply_to(mailbox(&config.reply_to)?);
    }
    for cc in &config.cc {
        builder = builder.cc(mailbox(cc)?);
    }
    let body = MultiPart::alternative()
        .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(mail.text.to_string()))
        .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(mail.html.to_string()));
    Ok(builder.multipart(body)?)
}

/// Longest a sendmail program may take to accept one message.
const SENDMAIL_TIMEOUT: Duration = Duration::from_secs(60);

/// A configured transport.
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Sendmail(AsyncSendmailTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

impl Transport {
    /// Builds the transport `[mail]` names.
    pub fn from_config(config: &MailConfig) -> Result<Transport, MailError> {
        Ok(match config.transport {
            MailTransport::Smtp => {
                let host = config.smtp_server.clone();
                let tls_params = || TlsParameters::new(host.clone());
                let tls = match config.smtp_tls {
                    SmtpTls::None => Tls::None,
                    SmtpTls::Opportunistic => Tls::Opportunistic(tls_params()?),
                    SmtpTls::Required => Tls::Required(tls_params()?),
                    SmtpTls::Wrapper => Tls::Wrapper(tls_params()?),
                };
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_server)
                    .port(config.smtp_port)
                    .tls(tls)
                    .timeout(Some(Duration::from_secs(60)));
                if !config.smtp_username.is_empty() {
                    let password = read_secret(&config.smtp_password_file)?;
                    builder = builder
                        .credentials(Credentials::new(config.smtp_username.clone(), password.trim_end().to_string()));
                }
                Transport::Smtp(builder.build())
            }
            MailTransport::Sendmail => {
                Transport::Sendmail(AsyncSendmailTransport::new_with_command(&config.sendmail_command))
            }
            MailTransport::File => {
                let _ = std::fs::create_dir_all(&config.file_dir);
                Transport::File(AsyncFileTransport::new(&config.file_dir))
            }
        })
    }

    /// Sends one message; returns when the transport accepted it.
    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        match self {
            Transport::Smtp(t) => {
                t.send(message).await?;
            }
            Transport::Sendmail(t) => {
                tokio::time::timeout(SENDMAIL_TIMEOUT, t.send(message))
                    .await
                    .map_err(|_| MailError::SendmailTimeout(SENDMAIL_TIMEOUT.as_secs()))??;
            }
            Transport::File(t) => {
                t.send(message).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("tw-smtp-secret-{}", std::process::id()));
        std::fs::write(&path, "hunter2\n").unwrap();
        let text = path.display().to_string();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(read_secret(&text), Err(MailError::PasswordExposed { mode: 0o644, .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret(&text).unwrap(), "hunter2\n");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn message_has_both_parts_and_our_message_id() {
        let config = MailConfig {
            from: "HPC <hpc@example.org>".into(),
            reply_to: "help@example.org".into(),
            cc: vec!["boss@example.org".into()],
            ..MailConfig::default()
        };
        let mail = Outgoing {
            to: "alice@example.org",
            subject: "Usage",
            html: "<p>hi</p>",
            text: "hi",
            message_id: "<turingwatch.1.alice@example.org>",
        };
        let raw = String::from_utf8(build_message(&config, &mail).unwrap().formatted()).unwrap();
        assert!(raw.contains("Message-ID: <turingwatch.1.alice@example.org>"), "{raw}");
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(raw.contains("Reply-To: help@example.org") && raw.contains("Cc: boss@example.org"));
        assert!(matches!(
            build_message(&config, &Outgoing { to: "not an address", ..mail }),
            Err(MailError::Address { .. })
        ));
    }
}
