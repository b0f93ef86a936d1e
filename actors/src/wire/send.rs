//! Sending one encoded report to the server: a plain HTTP/1.1 POST over a TCP stream.
//!
//! The scraper is a small blocking loop on compute nodes; one request per report with
//! `Connection: close` needs no HTTP client library or async runtime. Only `http://` is
//! supported: reports are authenticated by MUNGE, not by TLS (put the listener on the cluster
//! network). Every step has a timeout, so a stalled server cannot hang the scraper.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why a report did not reach the server (the answer, if any, is in [`Answer`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error("server URL {0:?} is not http://host:port[/path]")]
    BadUrl(String),
    #[error("cannot reach {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("talking to {addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("{addr} answered something that is not HTTP")]
    NotHttp { addr: String },
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Splits `http://host:port/prefix` into (`host:port`, `/prefix`).
pub fn parse_url(url: &str) -> Result<(String, String), SendError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| SendError::BadUrl(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(SendError::BadUrl(url.to_string()));
    }
    let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    Ok((authority, path.to_string()))
}

/// POSTs `body` to `url` + `path` with extra headers; returns the status and body.
pub fn post(
    url: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, SendError> {
    let (addr, prefix) = parse_url(url)?;
    let mut stream = connect(&addr, timeout).map_err(|source| SendError::Connect { addr: addr.clone(), source })?;
    let io = |source| SendError::Io { addr: addr.clone(), source };
    let mut head = format!(
        "POST {prefix}{path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    // The caller's Content-Type (the remote-write export's protobuf) replaces the default.
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        head.push_str("Content-Type: application/octet-stream\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(body).map_err(io)?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response).map_err(io)?;
    parse_response(&response).ok_or(SendError::NotHttp { addr })
}

/// A connection to `addr` (`host:port`, resolved, first address) within `timeout`, whose reads
/// and writes time out after `timeout` too.
pub fn connect(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

fn parse_response(bytes: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
    Some(Answer { status, body: body.trim().chars().take(500).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_prefix() {
        assert_eq!(parse_url("http://127.0.0.1:18200").unwrap(), ("127.0.0.1:18200".into(), String::new()));
        assert_eq!(parse_url("http://head/tw/").unwrap(), ("head:80".into(), "/tw".into()));
        assert!(parse_url("https://x").is_err() && parse_url("http://").is_err());
    }

    #[test]
    fn responses_give_status_and_body() {
        let a = parse_response(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 4\r\n\r\nnope").unwrap();
        assert_eq!((a.status, a.body.as_str()), (403, "nope"));
        assert!(parse_response(b"SSH-2.0").is_none());
    }

    #[test]
    fn an_unreachable_server_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = post(&format!("http://127.0.0.1:{port}"), "/x", &[], b"", Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, SendError::Connect { .. }), "{err}");
    }
}
