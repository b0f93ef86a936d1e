//! Filtering, sorting and paging of job lists: pure, so `/api/jobs` behaves the same whatever
//! the backend returns and the rules are tested without a server.

use crate::api::{JobPage, JobSummary};
use std::cmp::Ordering;

/// Why a listing request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    #[error("unknown sort key {0:?}; use one of {keys} (prefix '-' for descending)", keys = SORT_KEYS.join(", "))]
    UnknownSort(String),
    #[error("page must be a number from 1, got {0:?}")]
    BadPage(String),
    #[error("page_size must be a number from 1 to {max}, got {got:?}")]
    BadPageSize { got: String, max: usize },
}

/// Keys `sort=` accepts.
pub const SORT_KEYS: &[&str] = &[
    "id", "name", "user", "account", "state", "start", "end", "elapsed", "cpus", "cpu", "mem", "time", "wasted", "gpu",
];

/// How a listing is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortOrder {
    key: &'static str,
    descending: bool,
}

impl SortOrder {
    /// Parses `start`, `-wasted`…; empty means newest first.
    pub fn parse(text: &str) -> Result<SortOrder, ListingError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(SortOrder { key: "start", descending: true });
        }
        let (descending, name) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let key = SORT_KEYS.iter().find(|k| **k == name).ok_or_else(|| ListingError::UnknownSort(text.to_string()))?;
        Ok(SortOrder { key, descending })
    }

    fn compare(&self, a: &JobSummary, b: &JobSummary) -> Ordering {
        let ord = match self.key {
            "id" => a.id.cmp(&b.id),
            "name" => a.name.cmp(&b.name),
            "user" => a.user.cmp(&b.user),
            "account" => a.account.cmp(&b.account),
            "state" => a.state.cmp(&b.state),
            "start" => a.start_at.cmp(&b.start_at),
            "end" => a.end_at.cmp(&b.end_at),
            "elapsed" => a.elapsed_secs.cmp(&b.elapsed_secs),
            "cpus" => a.alloc_cpus.cmp(&b.alloc_cpus),
            "cpu" => cmp_opt(a.cpu_frac, b.cpu_frac),
            "mem" => cmp_opt(a.mem_frac, b.mem_frac),
            "time" => cmp_opt(a.time_frac, b.time_frac),
            "wasted" => a.wasted_core_hours.total_cmp(&b.wasted_core_hours),
            "gpu" => a.gpu_hours.total_cmp(&b.gpu_hours),
            _ => Ordering::Equal,
        };
        let ord = if self.descending { ord.reverse() } else { ord };
        // Ties broken by id, newest first, so pages are stable.
        ord.then_with(|| b.id.cmp(&a.id))
    }
}

fn cmp_opt(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

/// Parses a 1-based page number (default 1).
pub fn parse_page(text: Option<&str>) -> Result<usize, ListingError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(1),
        Some(t) => {
            t.parse::<usize>().ok().filter(|p| *p >= 1 && *p <= 1_000_000).ok_or(ListingError::BadPage(t.into()))
        }
    }
}

/// Parses a page size (default 50, capped by `max`).
pub fn parse_page_size(text: Option<&str>, max: usize) -> Result<usize, ListingError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(50.min(max)),
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|s| (1..=max).contains(s))
            .ok_or(ListingError::BadPageSize { got: t.into(), max }),
    }
}

/// Keeps jobs whose state is one of `states` (comma list, case-insensitive; empty keeps all).
pub fn filter_states(jobs: &mut Vec<JobSummary>, states: &str) {
    let wanted: Vec<String> =
        states.split(',').map(|s| s.trim().to_ascii_uppercase()).filter(|s| !s.is_empty()).collect();
    if !wanted.is_empty() {
        jobs.retain(|j| wanted.iter().any(|w| *w == j.state.to_ascii_uppercase()));
    }
}

/// Sorts and cuts one page.
pub fn page_of(mut jobs: Vec<JobSummary>, order: SortOrder, page: usize, page_size: usize) -> JobPage {
    jobs.sort_by(|a, b| order.compare(a, b));
    let total = jobs.len();
    let start = (page - 1).saturating_mul(page_size).min(total);
    let end = start.saturating_add(page_size).min(total);
    JobPage { total, page, page_size, jobs: jobs.drain(start..end).collect() }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn summary(id: u64, user: &str, state: &str, start: u64, wasted: f64) -> JobSummary {
        JobSummary {
            id,
            display_id: id.to_string(),
            name: format!("job{id}"),
            user: user.into(),
            account: "dev".into(),
            partition: "debug".into(),
            state: state.into(),
            submit_at: Some(start),
            start_at: Some(start),
            end_at: Some(start + 60),
            elapsed_secs: 60,
            time_limit_secs: Some(600),
            alloc_cpus: 2,
            node_count: 1,
            node_list: "n1".into(),
            req_mem_bytes: Some(1 << 30),
            max_rss_bytes: Some(1 << 20),
            gpus: 0,
            mem_used_bytes: Some(1 << 20),
            cpu_frac: Some(0.5),
            cpu_no_data: None,
            cpu_live: false,
            mem_no_data: None,
            mem_live: false,
            live_since: None,
            time_no_data: None,
            mem_frac: Some(0.001),
            time_frac: Some(0.1),
            core_hours: 2.0 * 60.0 / 3600.0,
            wasted_core_hours: wasted,
            gpu_hours: 0.0,
            gpu_util_frac: None,
            wasted_gpu_hours: None,
        }
    }

    #[test]
    fn sort_keys_parse_and_unknown_ones_are_refused() {
        assert_eq!(SortOrder::parse("").unwrap(), SortOrder { key: "start", descending: true });
        assert_eq!(SortOrder::parse("-wasted").unwrap(), SortOrder { key: "wasted", descending: true });
        assert!(matches!(SortOrder::parse("password"), Err(ListingError::UnknownSort(_))));
    }

    #[test]
    fn pages_are_sorted_cut_and_counted() {
        let jobs: Vec<_> = (1..=7).map(|i| summary(i, "a", "COMPLETED", 100 * i, i as f64)).collect();
        let page = page_of(jobs.clone(), SortOrder::parse("-wasted").unwrap(), 2, 3);
        assert_eq!(page.total, 7);
        assert_eq!(page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [4, 3, 2]);
        let last = page_of(jobs.clone(), SortOrder::parse("start").unwrap(), 3, 3);
        assert_eq!(last.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [7]);
        assert!(page_of(jobs, SortOrder::parse("id").unwrap(), 9, 3).jobs.is_empty());
    }

    #[test]
    fn state_filter_and_page_bounds() {
        let mut jobs = vec![summary(1, "a", "COMPLETED", 1, 0.0), summary(2, "a", "FAILED", 2, 0.0)];
        filter_states(&mut jobs, "failed, timeout");
        assert_eq!(jobs.len(), 1);
        assert_eq!(parse_page(None), Ok(1));
        assert!(parse_page(Some("0")).is_err() && parse_page(Some("x")).is_err());
        assert_eq!(parse_page_size(None, 500), Ok(50));
        assert_eq!(parse_page_size(Some("500"), 500), Ok(500));
        assert!(parse_page_size(Some("501"), 500).is_err());
    }
}
