//! What the server's ingest checks before it spends anything on a request: the shape of the
//! credential header, a per-peer rate, how many requests are in flight, and a bounded cache of
//! job owners (with short-lived negative entries). Pure data structures, so the rules are tested
//! here and the HTTP handler only applies them.
//!
//! Why: every node must reach the ingest port, so anyone on the cluster network can flood it.
//! A request that fails these checks costs a map lookup — no body read, no `unmunge`, no store
//! commit, no SLURM command.

use crate::job::JobId;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Longest credential header accepted (a MUNGE credential of a 32-byte payload is ~200 bytes).
pub const MAX_CREDENTIAL_BYTES: usize = 4096;

/// Distinct jobs one batch may name (a node runs far fewer at once).
pub const MAX_JOBS_PER_BATCH: usize = 1024;

/// Whether a header value has the shape of a MUNGE credential: `MUNGE:` then base64 and a final
/// `:`, bounded. Cheap enough to run before the body is read.
pub fn credential_shape_ok(value: &str) -> bool {
    let Some(rest) = value.strip_prefix("MUNGE:") else { return false };
    let Some(body) = rest.strip_suffix(':') else { return false };
    value.len() <= MAX_CREDENTIAL_BYTES
        && !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// A token bucket per peer address: `rate` requests a second, bursts of `burst`. The map is
/// bounded: when it holds `max_peers`, buckets idle long enough to be full again are dropped,
/// and if that frees nothing, the whole map is (peers then start with a full bucket).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_peers: usize,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64, max_peers: usize) -> RateLimiter {
        RateLimiter { rate, burst, max_peers: max_peers.max(1), buckets: HashMap::new() }
    }

    /// Takes one token for `peer` at `now`; false when its bucket is empty.
    pub fn allow(&mut self, peer: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= self.max_peers && !self.buckets.contains_key(&peer) {
            let full_after = Duration::from_secs_f64(self.burst / self.rate.max(f64::MIN_POSITIVE));
            self.buckets.retain(|_, (_, at)| now.saturating_duration_since(*at) < full_after);
            if self.buckets.len() >= self.max_peers {
                self.buckets.clear();
            }
        }
        let (tokens, at) = self.buckets.entry(peer).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Job owners already looked up: uid, or `None` for a job neither the store nor SLURM knew
/// (kept only `negative_ttl`, so a job that just started is found soon). Bounded by clearing.
#[derive(Debug)]
pub struct OwnerCache {
    max: usize,
    negative_ttl: Duration,
    owners: HashMap<JobId, (Option<u32>, Instant)>,
}

impl OwnerCache {
    pub fn new(max: usize, negative_ttl: Duration) -> OwnerCache {
        OwnerCache { max: max.max(1), negative_ttl, owners: HashMap::new() }
    }

    /// `Some(answer)` when cached (`answer` is the owner, or `None` for "nobody knows it").
    pub fn get(&self, job: JobId, now: Instant) -> Option<Option<u32>> {
        match self.owners.get(&job) {
            Some((Some(uid), _)) => Some(Some(*uid)),
            Some((None, at)) if now.saturating_duration_since(*at) < self.negative_ttl => Some(None),
            _ => None,
        }
    }

    pub fn put(&mut self, job: JobId, owner: Option<u32>, now: Instant) {
        if self.owners.len() >= self.max && !self.owners.contains_key(&job) {
            self.owners.clear();
        }
        self.owners.insert(job, (owner, now));
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_munge_shaped_headers_pass() {
        assert!(credential_shape_ok("MUNGE:AwQFAAB0bW9yZQ==:"));
        for bad in ["", "MUNGE:", "MUNGE::", "munge:abc:", "MUNGE:abc", "MUNGE:a b:", "MUNGE:ab\u{1}c:", "Bearer x"] {
            assert!(!credential_shape_ok(bad), "{bad:?}");
        }
        assert!(!credential_shape_ok(&format!("MUNGE:{}:", "A".repeat(MAX_CREDENTIAL_BYTES))));
    }

    #[test]
    fn a_peer_gets_its_burst_then_its_rate_and_others_are_not_hurt() {
        let mut limiter = RateLimiter::new(10.0, 5.0, 100);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!((0..20).filter(|_| limiter.allow(a, t0)).count(), 5);
        assert!(limiter.allow(b, t0), "another peer has its own bucket");
        assert!(!limiter.allow(a, t0 + Duration::from_millis(50)));
        assert!(limiter.allow(a, t0 + Duration::from_millis(150)), "one token per 100 ms");
    }

    #[test]
    fn the_peer_map_stays_bounded() {
        let mut limiter = RateLimiter::new(1.0, 2.0, 64);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let peer = IpAddr::from(std::net::Ipv4Addr::from(i));
            limiter.allow(peer, t0);
            assert!(limiter.buckets.len() <= 64);
        }
    }

    #[test]
    fn unknown_jobs_are_remembered_briefly_and_the_cache_is_bounded() {
        let mut cache = OwnerCache::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        cache.put(JobId(1), Some(1001), t0);
        cache.put(JobId(2), None, t0);
        assert_eq!(cache.get(JobId(1), t0 + Duration::from_secs(3600)), Some(Some(1001)));
        assert_eq!(cache.get(JobId(2), t0 + Duration::from_secs(30)), Some(None));
        assert_eq!(cache.get(JobId(2), t0 + Duration::from_secs(61)), None, "a negative entry expires");
        for id in 3..100 {
            cache.put(JobId(id), None, t0);
            assert!(cache.len() <= 3);
        }
    }
}
