//! What the server's ingest checks before it spends anything on a request: the shape of the
//! credential header, a per-peer rate, how many requests are in flight, bounded caches of job
//! owners and of SLURM's nodes (with short-lived negative entries), a per-sender budget of SLURM
//! lookups, and whether a report comes from the node it names. Pure data structures and
//! functions, so the rules are tested here and the HTTP handler only applies them.
//!
//! Why: every node must reach the ingest port, so anyone on the cluster network can flood it.
//! A request that fails these checks costs a map lookup — no body read, no MUNGE decode, no store
//! commit, no SLURM command — and an authenticated sender cannot make the server run more SLURM
//! commands than its budget, however many job ids or node names it invents.

use crate::job::JobId;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
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

/// A token bucket per key (a peer address, a uid): `rate` requests a second, bursts of `burst`.
/// The map is bounded: when it holds `max_peers`, buckets idle long enough to be full again are
/// dropped, and if that frees nothing, the whole map is (keys then start with a full bucket).
#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    rate: f64,
    burst: f64,
    max_peers: usize,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    pub fn new(rate: f64, burst: f64, max_peers: usize) -> RateLimiter<K> {
        RateLimiter { rate, burst, max_peers: max_peers.max(1), buckets: HashMap::new() }
    }

    /// Takes one token for `peer` at `now`; false when its bucket is empty.
    pub fn allow(&mut self, peer: K, now: Instant) -> bool {
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

/// What SLURM says of a node a report names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeFacts {
    /// Its addresses (NodeAddr, NodeHostName and its name, resolved).
    pub addrs: Vec<IpAddr>,
    /// `RealMemory`, KiB, when configured.
    pub real_memory_kib: Option<u64>,
}

impl NodeFacts {
    /// The most memory a sample on this node may claim: `RealMemory` is what SLURM may hand
    /// out, often set below the physical memory; half again on top covers that.
    pub fn memory_bound_kib(&self) -> Option<u64> {
        self.real_memory_kib.filter(|m| *m > 0).map(|m| m.saturating_add(m / 2))
    }
}

/// Whether a node name is one SLURM could have (and safe to hand to `scontrol` as an argument).
pub fn node_name_shape_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Whether a report naming a node with `facts` was sent from that node, judged by the address
/// MUNGE recorded for the host that encoded its credential (`encode`) and the TCP peer (`peer`).
///
/// A routable encode address decides alone (munged puts the encoding host's own address in the
/// credential; no sender can change it). munged often records a loopback address (Debian maps
/// the host name to 127.0.1.1), which says nothing: then the peer decides. When both are
/// loopback the report was made on the server's own host, which may claim only a node whose
/// address is loopback too (a single-host cluster, like the dev cluster).
pub fn sent_from_node(facts: &NodeFacts, encode: Option<Ipv4Addr>, peer: Option<IpAddr>) -> bool {
    let knows = |ip: IpAddr| facts.addrs.iter().any(|a| plain(*a) == plain(ip));
    if let Some(addr) = encode.filter(|a| !a.is_loopback() && !a.is_unspecified()) {
        return knows(IpAddr::V4(addr));
    }
    match peer.map(plain) {
        Some(ip) if !ip.is_loopback() => knows(ip),
        _ => facts.addrs.iter().any(|a| plain(*a).is_loopback()),
    }
}

/// SLURM's nodes already looked up: their facts, or `None` for a name SLURM does not know (kept
/// only `negative_ttl`). Facts are kept `ttl` (addresses change rarely). Bounded by clearing.
#[derive(Debug)]
pub struct NodeCache {
    max: usize,
    ttl: Duration,
    negative_ttl: Duration,
    nodes: HashMap<String, (Option<NodeFacts>, Instant)>,
}

impl NodeCache {
    pub fn new(max: usize, ttl: Duration, negative_ttl: Duration) -> NodeCache {
        NodeCache { max: max.max(1), ttl, negative_ttl, nodes: HashMap::new() }
    }

    /// `Some(answer)` when cached and fresh.
    pub fn get(&self, node: &str, now: Instant) -> Option<Option<NodeFacts>> {
        let (facts, at) = self.nodes.get(node)?;
        let ttl = if facts.is_some() { self.ttl } else { self.negative_ttl };
        (now.saturating_duration_since(*at) < ttl).then(|| facts.clone())
    }

    pub fn put(&mut self, node: &str, facts: Option<NodeFacts>, now: Instant) {
        if self.nodes.len() >= self.max && !self.nodes.contains_key(node) {
            self.nodes.clear();
        }
        self.nodes.insert(node.to_string(), (facts, now));
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
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

    fn facts(addrs: &[&str]) -> NodeFacts {
        NodeFacts { addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(), real_memory_kib: Some(1 << 20) }
    }

    #[test]
    fn a_report_binds_to_its_node_by_the_encode_address_else_the_peer() {
        let n1 = facts(&["10.1.0.1"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let v4 = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        // munged recorded a routable address: it decides, whatever the peer.
        assert!(sent_from_node(&n1, v4("10.1.0.1"), ip("10.9.9.9")));
        assert!(!sent_from_node(&n1, v4("10.1.0.2"), ip("10.1.0.1")), "another node's credential");
        // Debian's 127.0.1.1: the peer decides (IPv4-mapped IPv6 peers included).
        assert!(sent_from_node(&n1, v4("127.0.1.1"), ip("10.1.0.1")));
        assert!(sent_from_node(&n1, v4("127.0.1.1"), ip("::ffff:10.1.0.1")));
        assert!(!sent_from_node(&n1, v4("127.0.1.1"), ip("10.1.0.7")));
        // Made on the server's own host: only a loopback node may be claimed.
        assert!(!sent_from_node(&n1, v4("127.0.0.1"), ip("127.0.0.1")));
        assert!(sent_from_node(&facts(&["127.0.0.1"]), v4("127.0.0.1"), ip("127.0.0.1")));
        assert!(!sent_from_node(&NodeFacts::default(), None, None));
    }

    #[test]
    fn node_names_are_checked_before_any_command_sees_them() {
        for good in ["n1", "gpu-a100-07", "c1.cluster", "node_3"] {
            assert!(node_name_shape_ok(good), "{good}");
        }
        for bad in ["", "-n1", "--help", "n1 n2", "n1;rm", "n[1-3]", "n1,n2", &"n".repeat(65), "nö"] {
            assert!(!node_name_shape_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn nodes_are_cached_with_a_short_negative_life_and_bounded() {
        let mut cache = NodeCache::new(2, Duration::from_secs(600), Duration::from_secs(60));
        let t0 = Instant::now();
        cache.put("n1", Some(facts(&["10.0.0.1"])), t0);
        cache.put("zz", None, t0);
        assert!(cache.get("n1", t0 + Duration::from_secs(300)).unwrap().is_some());
        assert_eq!(cache.get("zz", t0 + Duration::from_secs(30)), Some(None));
        assert_eq!(cache.get("zz", t0 + Duration::from_secs(61)), None);
        assert_eq!(cache.get("n1", t0 + Duration::from_secs(601)), None);
        for i in 0..50 {
            cache.put(&format!("x{i}"), None, t0);
            assert!(cache.len() <= 2);
        }
        assert_eq!(facts(&[]).memory_bound_kib(), Some(3 << 19));
    }

    #[test]
    fn a_uid_budget_is_its_own() {
        let mut budget: RateLimiter<u32> = RateLimiter::new(1.0, 3.0, 16);
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| budget.allow(1001, t0)).count(), 3);
        assert!(budget.allow(1002, t0));
    }
}
