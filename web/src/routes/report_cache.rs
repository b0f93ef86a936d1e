//! Ready-made answers of `/api/report`, plain and gzip.
//!
//! The report is the page users open most, and the same bytes go out until the analysis
//! rewrites the report: so each (period, user) answer is serialised and compressed once and
//! reused while the stored report and its period are unchanged (their `updated_at`, state and
//! sizes form the version). Bounded: when full, the cache is emptied and refills on demand.

use actix_web::web::Bytes;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Most answers kept at once (a few KiB each).
const MAX_ENTRIES: usize = 4_096;

/// What identifies one version of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Version {
    pub report_updated_at: u64,
    pub period_updated_at: u64,
    pub period_end: u64,
    pub period_closed: bool,
    pub sizes: (usize, usize),
}

/// One answer, encoded both ways.
pub(super) struct Encoded {
    version: Version,
    pub json: Bytes,
    pub gzip: Bytes,
}

impl Encoded {
    /// Encodes `json`; gzip at the default level (the answer is reused many times).
    pub fn new(version: Version, json: Vec<u8>) -> Encoded {
        let mut encoder =
            flate2::write::GzEncoder::new(Vec::with_capacity(json.len() / 3), flate2::Compression::default());
        // Writing to a Vec cannot fail; should it, the plain answer is still right.
        let gzip = match encoder.write_all(&json).and_then(|()| encoder.finish()) {
            Ok(bytes) => Bytes::from(bytes),
            Err(_) => Bytes::new(),
        };
        Encoded { version, json: Bytes::from(json), gzip }
    }
}

#[derive(Default)]
pub(super) struct ReportCache {
    entries: Mutex<HashMap<(u64, String), Arc<Encoded>>>,
}

impl ReportCache {
    /// The cached answer, if it is of this version.
    pub fn get(&self, period_start: u64, user: &str, version: &Version) -> Option<Arc<Encoded>> {
        let entries = self.entries.lock().ok()?;
        entries.get(&(period_start, user.to_string())).filter(|e| e.version == *version).cloned()
    }

    /// Keeps an answer.
    pub fn put(&self, period_start: u64, user: &str, encoded: Arc<Encoded>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert((period_start, user.to_string()), encoded);
        }
    }
}

/// Whether the client takes gzip (`Accept-Encoding: gzip`, not with `q=0`).
pub(super) fn accepts_gzip(header: Option<&str>) -> bool {
    header.is_some_and(|h| {
        h.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(at: u64) -> Version {
        Version { report_updated_at: at, period_updated_at: 1, period_end: 2, period_closed: false, sizes: (3, 4) }
    }

    #[test]
    fn answers_are_reused_only_for_the_same_version() {
        let cache = ReportCache::default();
        cache.put(1, "alice", Arc::new(Encoded::new(version(5), b"{\"a\":1}".to_vec())));
        assert!(cache.get(1, "alice", &version(5)).is_some());
        assert!(cache.get(1, "alice", &version(6)).is_none());
        assert!(cache.get(1, "bob", &version(5)).is_none());
        let e = cache.get(1, "alice", &version(5)).unwrap();
        let mut plain = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&e.gzip[..]), &mut plain).unwrap();
        assert_eq!(plain.as_bytes(), &e.json[..]);
    }

    #[test]
    fn accept_encoding_is_read_as_http_means_it() {
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("br;q=1.0, GZIP;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("br")));
        assert!(!accepts_gzip(None));
    }
}
