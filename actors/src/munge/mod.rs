//! MUNGE credentials that bind a report to the uid that sent it.
//!
//! The cluster's own MUNGE is the authentication: the scraper runs `munge -s <payload>` and the
//! server decodes the credential, which tells who encoded it (uid and name), on which host,
//! when, and whether it was already decoded once (munged refuses replays). The payload is
//! `turingwatch-report-v1 <sha256 of the body>`, so a credential cannot be moved onto another
//! body.
//!
//! The server decodes through a [`Decoder`]: in-process with libmunge loaded at run time
//! (`libmunge`), a bounded number at once, or, where the library is missing, through the
//! `unmunge` program (one process per credential, said once in the log). The scraper encodes with
//! the `munge` program: once a minute per node, a process costs nothing there.

mod libmunge;

pub use libmunge::{user_name, LibMunge};

use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// Prefix of the credential payload; the body's digest follows.
pub const PAYLOAD_PREFIX: &str = "turingwatch-report-v1 ";

/// Prefix of the client API's credential payload; the method and path follow.
pub const CLIENT_PAYLOAD_PREFIX: &str = "turingwatch-client-v1 ";

/// The HTTP header carrying the credential.
pub const CREDENTIAL_HEADER: &str = "X-Munge-Credential";

/// Why a credential could not be made or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MungeError {
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} did not answer within {0:?}", program = .1)]
    Timeout(Duration, String),
    #[error("{program} failed: {message}")]
    Failed { program: String, message: String },
    #[error("credential refused by MUNGE: {status}")]
    Refused { status: String },
    #[error("unexpected unmunge output: {0}")]
    Unparsable(String),
}

/// What a valid credential says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub uid: u32,
    pub user: String,
    /// When it was encoded, unix seconds.
    pub encoded_at: u64,
    pub payload: String,
    /// The IPv4 address of the host that encoded it, as munged recorded it.
    pub encode_addr: Option<Ipv4Addr>,
}

/// Credentials decoded at once through libmunge (each holds a blocking thread for one round
/// trip to munged); more wait for a slot.
const DECODES_AT_ONCE: usize = 8;

/// Decodes credentials for the server: through libmunge when it loads, else `unmunge`.
#[derive(Debug, Clone)]
pub struct Decoder {
    library: Option<Arc<LibMunge>>,
    unmunge_command: String,
    slots: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

impl Decoder {
    /// Loads `library` (empty: none) and falls back to `unmunge_command`, saying which in one
    /// log line.
    pub fn new(library: &str, unmunge_command: &str, timeout: Duration) -> Decoder {
        let library = if library.is_empty() {
            tracing::info!(
                program = unmunge_command,
                "MUNGE credentials decoded by a program per report ([ingest] munge_library is empty)"
            );
            None
        } else {
            match LibMunge::load(Some(library)) {
                Ok(lib) => {
                    tracing::info!(library, "MUNGE credentials decoded in-process");
                    Some(Arc::new(lib))
                }
                Err(err) => {
                    tracing::warn!(library, error = %err, program = unmunge_command, "cannot load libmunge; MUNGE credentials decoded by a program per report");
                    None
                }
            }
        };
        Decoder {
            library,
            unmunge_command: unmunge_command.to_string(),
            slots: Arc::new(tokio::sync::Semaphore::new(DECODES_AT_ONCE)),
            timeout,
        }
    }

    /// Whether credentials are decoded in-process.
    pub fn in_process(&self) -> bool {
        self.library.is_some()
    }

    /// Decodes `credential`. Refused credentials (bad, expired, replayed) are
    /// [`MungeError::Refused`] with MUNGE's words; munged unreachable or too slow is another error.
    pub async fn decode(&self, credential: &str) -> Result<Decoded, MungeError> {
        let Some(library) = &self.library else {
            return decode_credential(&self.unmunge_command, credential, self.timeout).await;
        };
        let work = async {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| MungeError::Failed { program: "libmunge".into(), message: "decoder closed".into() })?;
            let (library, credential) = (library.clone(), credential.to_string());
            tokio::task::spawn_blocking(move || library.decode(&credential))
                .await
                .map_err(|err| MungeError::Failed { program: "libmunge".into(), message: err.to_string() })?
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(MungeError::Timeout(self.timeout, "munged".into())),
        }
    }
}

/// The payload that binds a credential to `body`.
pub fn payload_for(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut out = String::with_capacity(PAYLOAD_PREFIX.len() + 64);
    out.push_str(PAYLOAD_PREFIX);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The payload that binds a client API credential to one request: `turingwatch-client-v1 GET
/// /client/v1/jobs/42`. A credential made for one request is refused for any other, and munged
/// refuses a second decode of the same credential.
pub fn client_payload(method: &str, path: &str) -> String {
    format!("{CLIENT_PAYLOAD_PREFIX}{method} {path}")
}

/// The payload that binds a credential to one request with a body (the admin API's POSTs):
/// [`client_payload`] plus the body's digest, so a credential cannot carry another body.
pub fn client_body_payload(method: &str, path: &str, body: &[u8]) -> String {
    format!("{} {}", client_payload(method, path), payload_for(body))
}

/// Makes a credential for `body` with `munge_command` (blocking; the scraper is a thread).
pub fn encode_credential(munge_command: &str, body: &[u8]) -> Result<String, MungeError> {
    encode_payload(munge_command, &payload_for(body))
}

/// Makes a credential carrying `payload` with `munge_command` (blocking).
pub fn encode_payload(munge_command: &str, payload: &str) -> Result<String, MungeError> {
    let output = std::process::Command::new(munge_command)
        .args(["-s", payload])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| MungeError::Spawn { program: munge_command.to_string(), source })?;
    if !output.status.success() {
        return Err(MungeError::Failed {
            program: munge_command.to_string(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Decodes a credential with `unmunge_command` (async: the server's HTTP workers call it).
/// Refused credentials (bad, expired, replayed) are [`MungeError::Refused`] with MUNGE's status.
pub async fn decode_credential(
    unmunge_command: &str,
    credential: &str,
    timeout: Duration,
) -> Result<Decoded, MungeError> {
    use tokio::io::AsyncWriteExt;
    let program = unmunge_command.to_string();
    let mut child = tokio::process::Command::new(unmunge_command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| MungeError::Spawn { program: program.clone(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(credential.as_bytes()).await;
    }
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => return Err(MungeError::Timeout(timeout, program)),
        Ok(Err(source)) => return Err(MungeError::Spawn { program, source }),
        Ok(Ok(output)) => output,
    };
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let status = parse_field(&text, "STATUS").map(str::to_string).unwrap_or_else(|| {
            String::from_utf8_lossy(&output.stderr).trim().trim_start_matches("unmunge: ").to_string()
        });
        return Err(MungeError::Refused { status });
    }
    parse_unmunge(&text)
}

/// Parses `unmunge`'s default output (metadata lines, a blank line, the payload).
pub fn parse_unmunge(text: &str) -> Result<Decoded, MungeError> {
    let bad = || MungeError::Unparsable(text.chars().take(200).collect());
    let status = parse_field(text, "STATUS").ok_or_else(bad)?;
    if !status.starts_with("Success") {
        return Err(MungeError::Refused { status: status.to_string() });
    }
    let (user, uid) = name_and_number(parse_field(text, "UID").ok_or_else(bad)?).ok_or_else(bad)?;
    let (_, encoded_at) = name_and_number(parse_field(text, "ENCODE_TIME").ok_or_else(bad)?).ok_or_else(bad)?;
    let payload = text.split_once("\n\n").map(|(_, p)| p).unwrap_or("").to_string();
    // `ENCODE_HOST:     localhost (127.0.0.1)`
    let encode_addr = parse_field(text, "ENCODE_HOST")
        .and_then(|v| v.rsplit_once('(')?.1.strip_suffix(')')?.parse::<Ipv4Addr>().ok());
    Ok(Decoded { uid: u32::try_from(uid).map_err(|_| bad())?, user, encoded_at, payload, encode_addr })
}

fn parse_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

/// `root (0)` → ("root", 0); `2026-11-25 22:08:02 +0000 (1795644482)` → (…, 1795644482).
fn name_and_number(value: &str) -> Option<(String, u64)> {
    let open = value.rfind('(')?;
    let number = value[open + 1..].strip_suffix(')')?.parse().ok()?;
    Some((value[..open].trim().to_string(), number))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "STATUS:          Success (0)\nENCODE_HOST:     localhost (127.0.0.1)\nENCODE_TIME:     2026-11-25 22:08:02 +0000 (1795644482)\nDECODE_TIME:     2026-11-25 22:08:02 +0000 (1795644482)\nTTL:             300\nCIPHER:          aes128 (4)\nMAC:             sha256 (5)\nZIP:             none (0)\nUID:             alice (1001)\nGID:             alice (1001)\nLENGTH:          7\n\ntw1 abc";

    #[test]
    fn unmunge_output_gives_uid_time_and_payload() {
        let d = parse_unmunge(OUTPUT).unwrap();
        assert_eq!(
            (d.uid, d.user.as_str(), d.encoded_at, d.payload.as_str()),
            (1001, "alice", 1_795_644_482, "tw1 abc")
        );
        assert_eq!(d.encode_addr, Some(Ipv4Addr::LOCALHOST));
        let replayed = OUTPUT.replace("Success (0)", "Replayed credential (17)");
        assert!(
            matches!(parse_unmunge(&replayed), Err(MungeError::Refused { status }) if status.starts_with("Replayed"))
        );
        assert!(matches!(parse_unmunge("garbage"), Err(MungeError::Unparsable(_))));
    }

    #[test]
    fn the_payload_binds_the_body() {
        assert_ne!(payload_for(b"a"), payload_for(b"b"));
        assert_eq!(payload_for(b"").len(), PAYLOAD_PREFIX.len() + 64);
        // SHA-256 of the empty string.
        assert!(payload_for(b"").ends_with("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    }

    #[test]
    fn the_client_payload_binds_method_and_path() {
        assert_eq!(client_payload("GET", "/client/v1/jobs/42"), "turingwatch-client-v1 GET /client/v1/jobs/42");
        assert_ne!(client_payload("GET", "/client/v1/jobs/42"), client_payload("GET", "/client/v1/jobs/43"));
        assert!(!payload_for(b"GET /client/v1/jobs/42").starts_with(CLIENT_PAYLOAD_PREFIX));
    }

    #[actix_rt::test]
    async fn a_real_credential_decodes_once_then_is_a_replay() {
        if std::process::Command::new("munge").arg("-V").output().is_err() {
            eprintln!("skipping: munge is not installed");
            return;
        }
        let cred = encode_credential("munge", b"body").unwrap();
        let d = decode_credential("unmunge", &cred, Duration::from_secs(10)).await.unwrap();
        assert_eq!(d.payload, payload_for(b"body"));
        let again = decode_credential("unmunge", &cred, Duration::from_secs(10)).await;
        assert!(matches!(again, Err(MungeError::Refused { .. })), "{again:?}");
        let forged = decode_credential("unmunge", "MUNGE:AAAAforged:", Duration::from_secs(10)).await;
        assert!(matches!(forged, Err(MungeError::Refused { .. })), "{forged:?}");
    }

    /// libmunge and `unmunge` agree on who, when, where and what; both refuse replays and
    /// forgeries; a missing library falls back to the program.
    #[actix_rt::test]
    async fn libmunge_decodes_like_unmunge_and_refuses_the_same() {
        if std::process::Command::new("munge").arg("-V").output().is_err() {
            eprintln!("skipping: munge is not installed");
            return;
        }
        let decoder = Decoder::new("libmunge.so.2", "unmunge", Duration::from_secs(10));
        assert!(decoder.in_process(), "libmunge.so.2 is installed with munge; it must load");
        let cred = encode_credential("munge", b"body").unwrap();
        let by_lib = decoder.decode(&cred).await.unwrap();
        let cred2 = encode_credential("munge", b"body").unwrap();
        let by_program = decode_credential("unmunge", &cred2, Duration::from_secs(10)).await.unwrap();
        assert_eq!(by_lib.payload, payload_for(b"body"));
        assert_eq!(
            (by_lib.uid, &by_lib.user, by_lib.encode_addr),
            (by_program.uid, &by_program.user, by_program.encode_addr)
        );
        assert!(by_lib.encoded_at.abs_diff(by_program.encoded_at) <= 5);
        for (bad, want) in
            [(cred.as_str(), "Replayed"), ("MUNGE:AAAAforged:", "Invalid"), ("", "Invalid"), ("MUNGE:\0x:", "")]
        {
            match decoder.decode(bad).await {
                Err(MungeError::Refused { status }) => assert!(status.contains(want), "{bad:?}: {status}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let fallback = Decoder::new("/nonexistent/libmunge.so.2", "unmunge", Duration::from_secs(10));
        assert!(!fallback.in_process());
        let cred3 = encode_credential("munge", b"x").unwrap();
        assert_eq!(fallback.decode(&cred3).await.unwrap().payload, payload_for(b"x"));
    }
}
