//! Every rule a parsed configuration must satisfy, reported all at once.
//!
//! Types are checked by serde while parsing; this module checks values and combinations
//! (ranges, addresses, time zones, one duration shorter than another). Each problem names the
//! key, the value and what is allowed, so an admin can fix the file in one pass.

use crate::model::{Config, MailTransport, SmtpTls};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `section.key`, e.g. `scrape.interval`.
    pub key: String,
    /// The offending value as written.
    pub value: String,
    /// What is allowed instead.
    pub allowed: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, value: impl Into<String>, allowed: impl Into<String>) -> Self {
        Problem { key: key.into(), value: value.into(), allowed: allowed.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.allowed)
        } else {
            write!(f, "{} = {:?}: {}", self.key, self.value, self.allowed)
        }
    }
}

/// Weekday names accepted by `analysis.anchor_weekday` and `mail.quiet_days`.
pub const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Returns every problem found (empty when the configuration is usable).
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, key: &str, value: String, allowed: &str| {
        if !ok {
            problems.push(Problem::new(key, value, allowed));
        }
    };

    check(!config.store.path.trim().is_empty(), "store.path", config.store.path.clone(), "a file path");
    let store = &config.store;
    let period = config.analysis.period.as_secs();
    let raw = store.raw_retention_secs(&config.analysis);
    let need = period.saturating_mul(1 + crate::model::TREND_PERIODS);
    check(
        raw > need,
        "store.raw_retention",
        format!("{raw}s"),
        &format!(
            "longer than one analysis period plus the trend window ({} periods of {period}s = {need}s), so every open period and trend reads raw samples",
            crate::model::TREND_PERIODS
        ),
    );
    check(
        store.summary_retention.as_secs() >= raw,
        "store.summary_retention",
        format!("{}s", store.summary_retention.as_secs()),
        "at least store.raw_retention",
    );
    // Unset, it is summary_retention (checked above).
    check(
        store.job_retention.is_none_or(|span| span.as_secs() >= raw),
        "store.job_retention",
        format!("{}s", store.job_retention_secs()),
        "at least store.raw_retention (a job's raw samples are kept that long, so its record must be too)",
    );
    check(
        (60..=86_400).contains(&store.retention_interval.as_secs()),
        "store.retention_interval",
        format!("{}s", store.retention_interval.as_secs()),
        "1 min to 1 d",
    );

    let e = &config.energy;
    let watts = |w: f64| w.is_finite() && (0.0..=100_000.0).contains(&w);
    let pue = |p: f64| p.is_finite() && (1.0..=10.0).contains(&p);
    check(watts(e.watts_per_core), "energy.watts_per_core", e.watts_per_core.to_string(), "0 to 100000 W");
    check(watts(e.watts_per_gb), "energy.watts_per_gb", e.watts_per_gb.to_string(), "0 to 100000 W");
    check(watts(e.watts_per_gpu), "energy.watts_per_gpu", e.watts_per_gpu.to_string(), "0 to 100000 W");
    check(pue(e.pue), "energy.pue", e.pue.to_string(), "1 to 10");
    check(
        e.grams_co2e_per_kwh.is_finite() && (0.0..=5_000.0).contains(&e.grams_co2e_per_kwh),
        "energy.grams_co2e_per_kwh",
        e.grams_co2e_per_kwh.to_string(),
        "0 to 5000",
    );
    for (name, f) in &e.partitions {
        let key = |k: &str| format!("energy.partitions.{name}.{k}");
        for (k, v) in
            [("watts_per_core", f.watts_per_core), ("watts_per_gb", f.watts_per_gb), ("watts_per_gpu", f.watts_per_gpu)]
        {
            if let Some(v) = v {
                check(watts(v), &key(k), v.to_string(), "0 to 100000 W");
            }
        }
        if let Some(p) = f.pue {
            check(pue(p), &key("pue"), p.to_string(), "1 to 10");
        }
    }

    let slurm = &config.slurm;
    check(
        slurm.command_timeout.as_secs() >= 1,
        "slurm.command_timeout",
        slurm.command_timeout.to_string(),
        "at least 1s",
    );

    let acct = &config.accounting;
    check(acct.interval.as_secs() >= 10, "accounting.interval", acct.interval.to_string(), "at least 10s");
    check(
        acct.first_window >= acct.interval,
        "accounting.first_window",
        acct.first_window.to_string(),
        "at least accounting.interval (the first import must cover one interval)",
    );
    check(
        acct.reconnect_wait.as_secs() >= 1,
        "accounting.reconnect_wait",
        acct.reconnect_wait.to_string(),
        "at least 1s",
    );

    let scrape = &config.scrape;
    check(scrape.interval.as_secs() >= 1, "scrape.interval", scrape.interval.to_string(), "at least 1s");
    check(
        scrape.time_per_node > scrape.interval,
        "scrape.time_per_node",
        scrape.time_per_node.to_string(),
        &format!("longer than scrape.interval ({})", scrape.interval),
    );
    check(
        (1..=1024).contains(&scrape.concurrent_nodes),
        "scrape.concurrent_nodes",
        scrape.concurrent_nodes.to_string(),
        "a whole number from 1 to 1024",
    );
    check(
        (1..=1000).contains(&scrape.process_scan_every),
        "scrape.process_scan_every",
        scrape.process_scan_every.to_string(),
        "a whole number of samples from 1 to 1000",
    );
    check(
        scrape.process_rereads_per_scan >= 1,
        "scrape.process_rereads_per_scan",
        scrape.process_rereads_per_scan.to_string(),
        "at least 1",
    );
    check(
        scrape.spool_max_bytes >= 1024 * 1024,
        "scrape.spool_max_bytes",
        scrape.spool_max_bytes.to_string(),
        "at least 1048576 (1 MiB)",
    );
    check(
        scrape.server_url.is_empty()
            || scrape.server_url.starts_with("http://")
            || scrape.server_url.starts_with("https://"),
        "scrape.server_url",
        scrape.server_url.clone(),
        "empty, or a URL starting with http:// or https://",
    );

    let dist = &config.distributor;
    check(
        dist.allocation_timeout.as_secs() >= 1,
        "distributor.allocation_timeout",
        dist.allocation_timeout.to_string(),
        "at least 1s",
    );
    check(
        !dist.job_name.trim().is_empty() && !dist.job_name.contains(char::is_whitespace),
        "distributor.job_name",
        dist.job_name.clone(),
        "a non-empty name without spaces",
    );
    check(
        dist.backoff_initial <= dist.backoff_max,
        "distributor.backoff_initial",
        dist.backoff_initial.to_string(),
        &format!("at most distributor.backoff_max ({})", dist.backoff_max),
    );

    let ingest = &config.ingest;
    check(
        (1024..=1024 * 1024 * 1024).contains(&ingest.max_report_bytes),
        "ingest.max_report_bytes",
        ingest.max_report_bytes.to_string(),
        "from 1024 to 1073741824 bytes",
    );

    let export = &config.export;
    check(
        export.remote_write_url.is_empty()
            || export.remote_write_url.strip_prefix("http://").is_some_and(|r| !r.is_empty() && !r.starts_with('/')),
        "export.remote_write_url",
        export.remote_write_url.clone(),
        "empty, or a URL starting with http:// (https: send through a local vmagent or TLS proxy)",
    );
    check(export.interval.as_secs() >= 1, "export.interval", export.interval.to_string(), "at least 1s");
    check(export.timeout.as_secs() >= 1, "export.timeout", export.timeout.to_string(), "at least 1s");
    check(
        (1_000..=100_000_000).contains(&export.max_buffered_samples),
        "export.max_buffered_samples",
        export.max_buffered_samples.to_string(),
        "from 1000 to 100000000",
    );

    let analysis = &config.analysis;
    check(analysis.period.as_secs() >= 60, "analysis.period", analysis.period.to_string(), "at least 1m");
    check(
        WEEKDAYS.contains(&analysis.anchor_weekday.as_str()),
        "analysis.anchor_weekday",
        analysis.anchor_weekday.clone(),
        "one of mon, tue, wed, thu, fri, sat, sun",
    );
    check(
        parse_time_of_day(&analysis.anchor_time).is_some(),
        "analysis.anchor_time",
        analysis.anchor_time.clone(),
        "a time of day HH:MM from 00:00 to 23:59",
    );
    check(
        analysis.timezone == "local" || jiff::tz::TimeZone::get(&analysis.timezone).is_ok(),
        "analysis.timezone",
        analysis.timezone.clone(),
        "\"local\" or an IANA time zone name such as \"Europe/Oslo\"",
    );
    check(
        (0.0..=5.0).contains(&analysis.rightsize_margin_frac),
        "analysis.rightsize_margin_frac",
        analysis.rightsize_margin_frac.to_string(),
        "a fraction from 0.0 to 5.0",
    );

    let f = &config.findings;
    for (key, value) in [
        ("findings.cpu_underuse_frac", f.cpu_underuse_frac),
        ("findings.mem_underuse_frac", f.mem_underuse_frac),
        ("findings.gpu_try_split_frac", f.gpu_try_split_frac),
        ("findings.gpu_investigate_frac", f.gpu_investigate_frac),
        ("findings.time_limit_use_frac", f.time_limit_use_frac),
    ] {
        check((0.0..=1.0).contains(&value), key, value.to_string(), "a fraction from 0.0 to 1.0");
    }
    check(
        (0.0..=100.0).contains(&f.gpu_low_util_pct),
        "findings.gpu_low_util_pct",
        f.gpu_low_util_pct.to_string(),
        "a percentage from 0 to 100",
    );
    check(
        f.fault_churn_per_sec >= 0.0,
        "findings.fault_churn_per_sec",
        f.fault_churn_per_sec.to_string(),
        "zero or more",
    );

    let mail = &config.mail;
    check(
        looks_like_mailbox(&mail.from),
        "mail.from",
        mail.from.clone(),
        "an address like \"Admin <admin@example.org>\"",
    );
    check(
        mail.reply_to.is_empty() || looks_like_mailbox(&mail.reply_to),
        "mail.reply_to",
        mail.reply_to.clone(),
        "empty or a mail address",
    );
    for (user, address) in &mail.addresses {
        check(looks_like_mailbox(address), &format!("mail.addresses.{user}"), address.clone(), "a mail address");
    }
    check(
        config.analysis.close_grace.as_secs() >= 1,
        "analysis.close_grace",
        config.analysis.close_grace.to_string(),
        "at least 1s",
    );
    for cc in &mail.cc {
        check(looks_like_mailbox(cc), "mail.cc", cc.clone(), "mail addresses");
    }
    check(
        !mail.domain.is_empty() && !mail.domain.contains(['@', ' ']),
        "mail.domain",
        mail.domain.clone(),
        "a domain name such as \"example.org\" (recipients are user@domain)",
    );
    if mail.transport == MailTransport::Smtp {
        check(
            !mail.smtp_server.is_empty(),
            "mail.smtp_server",
            mail.smtp_server.clone(),
            "a host name when mail.transport = \"smtp\"",
        );
        check(mail.smtp_port != 0, "mail.smtp_port", mail.smtp_port.to_string(), "a port from 1 to 65535");
        check(
            mail.smtp_username.is_empty() == mail.smtp_password_file.is_empty(),
            "mail.smtp_password_file",
            mail.smtp_password_file.clone(),
            "set together with mail.smtp_username (both or neither)",
        );
        check(
            mail.smtp_username.is_empty() || matches!(mail.smtp_tls, SmtpTls::Required | SmtpTls::Wrapper),
            "mail.smtp_tls",
            format!("{:?}", mail.smtp_tls).to_lowercase(),
            "\"required\" or \"wrapper\" when mail.smtp_username is set (credentials never travel in clear)",
        );
    }
    if mail.transport == MailTransport::Sendmail {
        check(
            !mail.sendmail_command.is_empty(),
            "mail.sendmail_command",
            String::new(),
            "a program path when mail.transport = \"sendmail\"",
        );
    }
    if mail.transport == MailTransport::File {
        check(!mail.file_dir.is_empty(), "mail.file_dir", String::new(), "a directory when mail.transport = \"file\"");
    }
    for day in &mail.quiet_days {
        check(WEEKDAYS.contains(&day.as_str()), "mail.quiet_days", day.clone(), "weekday names mon … sun");
    }
    check(mail.max_attempts >= 1, "mail.max_attempts", mail.max_attempts.to_string(), "at least 1");
    check(
        (0.0..=0.5).contains(&mail.holdout_share),
        "mail.holdout_share",
        mail.holdout_share.to_string(),
        "a share from 0 (off) to 0.5",
    );
    if mail.holdout_share > 0.0 {
        check(
            !mail.holdout_salt.trim().is_empty(),
            "mail.holdout_salt",
            String::new(),
            "a site secret when mail.holdout_share > 0 (it decides who is held back)",
        );
    }

    let web = &config.web;
    check(
        web.bind.parse::<SocketAddr>().is_ok(),
        "web.bind",
        web.bind.clone(),
        "an address:port such as \"127.0.0.1:8080\"",
    );
    check(
        is_header_name(&web.identity_header),
        "web.identity_header",
        web.identity_header.clone(),
        "an HTTP header name (letters, digits, '-')",
    );
    for proxy in &web.trusted_proxies {
        check(
            parse_cidr(proxy).is_some(),
            "web.trusted_proxies",
            proxy.clone(),
            "IP addresses or CIDR ranges such as \"10.0.0.0/8\"",
        );
    }
    for domain in &web.identity_domains {
        check(
            !domain.is_empty()
                && domain.len() <= 253
                && domain.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
                && !domain.starts_with(['.', '-']),
            "web.identity_domains",
            domain.clone(),
            "DNS domain names such as \"example.org\"",
        );
    }
    check(
        web.coordinator_cache_ttl.as_secs() >= 1,
        "web.coordinator_cache_ttl",
        web.coordinator_cache_ttl.as_secs().to_string(),
        "at least \"1s\"",
    );
    check(
        (1..=100_000).contains(&web.max_page_size),
        "web.max_page_size",
        web.max_page_size.to_string(),
        "from 1 to 100000",
    );
    problems
}

/// `HH:MM` → minutes after midnight.
pub fn parse_time_of_day(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// An address or CIDR range: `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`.
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
        None => {
            let a = text.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn looks_like_mailbox(text: &str) -> bool {
    let addr = match (text.find('<'), text.rfind('>')) {
        (Some(l), Some(r)) if l < r => &text[l + 1..r],
        _ => text,
    };
    match addr.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !addr.contains(' '),
        None => false,
    }
}

fn is_header_name(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::Span;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&Config::default()), vec![]);
    }

    #[test]
    fn raw_retention_must_outlast_a_period_and_the_trend_window() {
        let mut config = Config::default();
        // Default follows the period: 7 d × 6.
        assert_eq!(config.store.raw_retention_secs(&config.analysis), 42 * 86_400);
        config.analysis.period = Span::secs(14 * 86_400);
        assert_eq!(config.store.raw_retention_secs(&config.analysis), 84 * 86_400);
        config.store.raw_retention = Some(Span::secs(35 * 86_400));
        config.analysis.period = Span::secs(7 * 86_400);
        let keys: Vec<String> = validate(&config).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["store.raw_retention".to_string()]);
        config.store.raw_retention = Some(Span::secs(36 * 86_400));
        assert_eq!(validate(&config), vec![]);
        config.store.summary_retention = Span::secs(30 * 86_400);
        let keys: Vec<String> = validate(&config).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["store.summary_retention".to_string()]);
        config.store.summary_retention = Span::secs(400 * 86_400);
        assert_eq!(config.store.job_retention_secs(), 400 * 86_400, "defaults to summary_retention");
        config.store.job_retention = Some(Span::secs(35 * 86_400));
        let keys: Vec<String> = validate(&config).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["store.job_retention".to_string()]);
        config.store.job_retention = Some(Span::secs(36 * 86_400));
        assert_eq!(validate(&config), vec![]);
        assert_eq!(config.store.job_retention_secs(), 36 * 86_400);
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let mut config = Config::default();
        config.scrape.interval = Span::secs(900);
        config.web.bind = "nowhere".into();
        config.analysis.anchor_weekday = "funday".into();
        let problems = validate(&config);
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["scrape.time_per_node", "analysis.anchor_weekday", "web.bind"]);
        assert!(problems[2].to_string().contains("\"nowhere\""));
    }

    #[test]
    fn the_remote_write_url_must_be_http() {
        let mut config = Config::default();
        for (url, ok) in [
            ("", true),
            ("http://vm:8428/api/v1/write", true),
            ("https://vm/api/v1/write", false),
            ("http://", false),
            ("vm:8428", false),
        ] {
            config.export.remote_write_url = url.into();
            let keys: Vec<_> = validate(&config).into_iter().map(|p| p.key).collect();
            assert_eq!(keys.is_empty(), ok, "{url}: {keys:?}");
        }
    }

    #[test]
    fn smtp_needs_username_and_password_file_together() {
        let mut config = Config::default();
        config.mail.transport = MailTransport::Smtp;
        config.mail.smtp_username = "robot".into();
        config.mail.smtp_tls = SmtpTls::Required;
        let problems = validate(&config);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "mail.smtp_password_file");
    }

    #[test]
    fn smtp_credentials_need_tls() {
        let mut config = Config::default();
        config.mail.transport = MailTransport::Smtp;
        config.mail.smtp_username = "robot".into();
        config.mail.smtp_password_file = "/etc/turingwatch/smtp-password".into();
        for (tls, ok) in [
            (SmtpTls::None, false),
            (SmtpTls::Opportunistic, false),
            (SmtpTls::Required, true),
            (SmtpTls::Wrapper, true),
        ] {
            config.mail.smtp_tls = tls;
            let problems = validate(&config);
            assert_eq!(problems.is_empty(), ok, "{tls:?}: {problems:?}");
            if !ok {
                assert_eq!(problems[0].key, "mail.smtp_tls");
            }
        }
    }

    #[test]
    fn a_holdout_is_at_most_half_the_users_and_needs_a_salt() {
        let mut config = Config::default();
        for (share, salt, problems) in [
            (0.0, "", vec![]),
            (0.2, "", vec!["mail.holdout_salt"]),
            (0.2, "s3cret", vec![]),
            (0.5, "s3cret", vec![]),
            (0.6, "s3cret", vec!["mail.holdout_share"]),
            (-0.1, "s3cret", vec![]),
            (f64::NAN, "s3cret", vec!["mail.holdout_share"]),
        ] {
            (config.mail.holdout_share, config.mail.holdout_salt) = (share, salt.into());
            let keys: Vec<String> = validate(&config).into_iter().map(|p| p.key).collect();
            let expected: Vec<&str> = if share < 0.0 { vec!["mail.holdout_share"] } else { problems };
            assert_eq!(keys, expected, "{share} {salt:?}");
        }
    }

    #[test]
    fn cidr_forms() {
        assert!(parse_cidr("10.0.0.0/8").is_some());
        assert!(parse_cidr("::1").is_some());
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("example.org").is_none());
    }

    #[test]
    fn time_of_day_forms() {
        assert_eq!(parse_time_of_day("00:00"), Some(0));
        assert_eq!(parse_time_of_day("13:05"), Some(785));
        assert_eq!(parse_time_of_day("24:00"), None);
        assert_eq!(parse_time_of_day("9:00"), None);
    }
}
