//! Rendering a user's period analysis into the report mail: HTML, plain text and headers.
//!
//! Templates are runtime files (minijinja) an admin edits without recompiling: the built-in ones
//! (`actors/templates/`) are embedded, and `[mail] templates_dir` may hold replacements named
//! `report.html` / `report.txt`. Templates get a flat view with every number already formatted
//! (`MailView`), so they hold layout only.

use crate::analysis::findings::{bytes_text, duration_text, Severity};
use crate::analysis::period::{local_text, PeriodSpec};
use crate::analysis::summary::{JobAnalysis, UserAnalysis, TREND_PERIODS};
use serde::Serialize;
use std::path::{Path, PathBuf};
use turingwatch_config::Config;

const BUILTIN_HTML: &str = include_str!("../../templates/report.html");
const BUILTIN_TEXT: &str = include_str!("../../templates/report.txt");

/// Rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read template {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("template {name} does not render: {source:#}")]
    Template { name: &'static str, source: minijinja::Error },
}

/// A rendered report mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// `<user>.mail.header` of the bundle: RFC 822 headers and a blank line.
    pub header: String,
}

/// The templates in use.
#[derive(Debug, Clone)]
pub struct Templates {
    html: String,
    text: String,
}

impl Templates {
    /// The built-in templates, replaced by those found in `dir` (when not empty).
    pub fn load(dir: &str) -> Result<Templates, RenderError> {
        let mut t = Templates { html: BUILTIN_HTML.to_string(), text: BUILTIN_TEXT.to_string() };
        if !dir.is_empty() {
            for (name, slot) in [("report.html", &mut t.html), ("report.txt", &mut t.text)] {
                let path = Path::new(dir).join(name);
                if path.exists() {
                    *slot = std::fs::read_to_string(&path).map_err(|source| RenderError::Read { path, source })?;
                }
            }
        }
        Ok(t)
    }
}

#[derive(Serialize)]
struct KindView {
    title: &'static str,
    severity: &'static str,
    fg: &'static str,
    bg: &'static str,
    jobs: usize,
    cause: &'static str,
    impact: &'static str,
    solution: &'static str,
    /// The concrete fix of one job with this finding (`job 12: LD_PRELOAD=… <your program>`),
    /// so the command reaches the mail even when the job is not among the worst.
    example: String,
}

#[derive(Serialize)]
struct FindingView {
    title: &'static str,
    fg: &'static str,
    bg: &'static str,
    evidence: String,
    fix: String,
}

#[derive(Serialize)]
struct JobView {
    id: String,
    name: String,
    state: String,
    elapsed: String,
    cpus: u32,
    mem_req: String,
    cpu_pct: String,
    /// `cpu_pct` with its unit, or why there is no figure ("no data yet" while the job runs).
    cpu_text: String,
    cpu_bar: u32,
    mem_pct: String,
    /// `mem_pct` with its unit, or why there is no figure.
    mem_text: String,
    mem_bar: u32,
    coverage_pct: String,
    titles: String,
    link: String,
    /// `42 Wh (13 g CO2e), of which 36 Wh (11 g CO2e) wasted, estimated`; empty when none.
    energy: String,
    findings: Vec<FindingView>,
}

#[derive(Serialize)]
struct FamilyView {
    name: String,
    points: Vec<String>,
}

#[derive(Serialize)]
struct RightSizeView {
    family: String,
    jobs: usize,
    options: String,
}

/// What the templates see.
#[derive(Serialize)]
struct MailView {
    user: String,
    subject: String,
    period_start: u64,
    period_start_text: String,
    period_end_text: String,
    tldr: Vec<String>,
    job_count: usize,
    alloc_core_hours: String,
    used_core_hours: String,
    overall_cpu_pct: String,
    /// `2.31 kWh (693 g CO2e), of which 1.80 kWh (540 g CO2e) wasted; estimated from [energy]`.
    energy: String,
    kinds: Vec<KindView>,
    worst: Vec<JobView>,
    jobs: Vec<JobView>,
    rightsize: Vec<RightSizeView>,
    families: Vec<FamilyView>,
    trend_headers: Vec<String>,
    web_link: String,
    feedback_link: String,
    reply_to: String,
    analysis_id: String,
}

/// The original's severity colours (foreground, background).
fn colours(s: Severity) -> (&'static str, &'static str) {
    match s {
        Severity::Serious => ("#cc0000", "#ffe5e5"),
        Severity::Medium => ("#b35900", "#fff8d6"),
        Severity::Info => ("#0033cc", "#e3f6ff"),
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Serious => "serious",
        Severity::Medium => "medium",
        Severity::Info => "info",
    }
}

fn pct(frac: Option<f64>) -> String {
    frac.map_or_else(|| "n/a".to_string(), |f| format!("{:.1}", f * 100.0))
}

/// A percentage with its unit, or what stands in for a missing one ("no data yet" while a job
/// runs, never "0 %").
fn pct_text(frac: Option<f64>, why: Option<crate::analysis::efficiency::NoData>) -> String {
    match (frac, why) {
        (Some(f), _) => format!("{:.1} %", f * 100.0),
        (None, Some(crate::analysis::efficiency::NoData::Running)) => "no data yet".to_string(),
        (None, _) => "n/a".to_string(),
    }
}

fn bar(frac: Option<f64>) -> u32 {
    (frac.unwrap_or(0.0).clamp(0.0, 1.0) * 100.0).round() as u32
}

/// The recipient address of a user.
pub fn recipient(config: &Config, user: &str) -> String {
    config.mail.addresses.get(user).cloned().unwrap_or_else(|| format!("{user}@{}", config.mail.domain))
}

fn job_view(j: &JobAnalysis, base: &str) -> JobView {
    let e = &j.efficiency;
    JobView {
        id: j.record.display_id.clone(),
        name: j.record.name.clone(),
        state: j.record.state.clone(),
        elapsed: duration_text(j.record.elapsed_secs),
        cpus: j.record.alloc_cpus,
        mem_req: j.record.req_mem_bytes.map_or_else(|| "no memory".into(), bytes_text),
        cpu_pct: pct(e.cpu_frac),
        cpu_text: pct_text(e.cpu_frac, e.cpu_no_data),
        cpu_bar: bar(e.cpu_frac),
        mem_pct: pct(e.mem_frac),
        mem_text: pct_text(e.mem_frac, e.mem_no_data),
        mem_bar: bar(e.mem_frac),
        coverage_pct: format!("{:.0}", j.sample_coverage_frac * 100.0),
        titles: j.findings.iter().map(|f| f.kind.title()).collect::<Vec<_>>().join(", "),
        // The web site's routes: `#/job/<id>` and `#/report?period=<start>&user=<user>`.
        link: if base.is_empty() { String::new() } else { format!("{}/#/job/{}", base.trim_end_matches('/'), j.id()) },
        energy: j.energy.as_ref().map(crate::analysis::energy::job_energy_text).unwrap_or_default(),
        findings: j
            .findings
            .iter()
            .map(|f| {
                let (fg, bg) = colours(f.severity);
                FindingView { title: f.kind.title(), fg, bg, evidence: f.evidence.clone(), fix: f.fix.clone() }
            })
            .collect(),
    }
}

/// The period's energy in one line, saying whether counters measured it and naming the factors.
fn energy_line(a: &UserAnalysis, config: &turingwatch_config::EnergyConfig) -> String {
    use crate::analysis::energy::{co2e_text, energy_text, factors_text, EnergySource};
    let sources: Vec<EnergySource> = a.jobs.iter().filter_map(|j| j.energy.as_ref().map(|e| e.source)).collect();
    if sources.is_empty() {
        return String::new();
    }
    let how = if sources.iter().all(|s| *s == EnergySource::Estimated) {
        "estimated from the site's power factors"
    } else if sources.iter().all(|s| *s == EnergySource::Measured) {
        "measured by the nodes' energy counters"
    } else {
        "partly measured, partly estimated"
    };
    format!(
        "{} ({}), of which {} ({}) went to what was allocated and not used; {how} (factors: {})",
        energy_text(a.energy_kwh),
        co2e_text(a.co2e_g),
        energy_text(a.wasted_kwh),
        co2e_text(a.wasted_co2e_g),
        factors_text(config)
    )
}

fn tldr(a: &UserAnalysis) -> Vec<String> {
    if !a.has_findings() {
        return vec![format!("Nice! No problem identified in your {} job(s) this period.", a.jobs.len())];
    }
    let mut lines: Vec<String> = a
        .kinds
        .iter()
        .map(|k| format!("{} job(s) show {} ({}).", k.jobs, k.title, severity_name(k.severity)))
        .collect();
    if let Some(first) = a.worst.first() {
        lines.insert(0, format!("Start with job {first}: it wasted the most of what it asked for."));
    }
    lines
}

/// Renders one user's report mail.
pub fn render_mail(
    a: &UserAnalysis,
    config: &Config,
    spec: &PeriodSpec,
    templates: &Templates,
) -> Result<RenderedMail, RenderError> {
    let mail = &config.mail;
    let tz = spec.time_zone();
    let base = mail.web_base_url.trim_end_matches('/').to_string();
    let analysis_id = format!("{}:{}", a.period.start, a.user);
    let feedback_link = if mail.feedback_link.is_empty() {
        String::new()
    } else {
        let sep = if mail.feedback_link.contains('?') { '&' } else { '?' };
        format!("{}{sep}letter_ref={analysis_id}", mail.feedback_link)
    };
    let view = MailView {
        user: a.user.clone(),
        subject: mail.subject.clone(),
        period_start: a.period.start,
        period_start_text: local_text(a.period.start, tz),
        period_end_text: local_text(a.period.end, tz),
        tldr: tldr(a),
        job_count: a.jobs.len(),
        alloc_core_hours: format!("{:.2}", a.alloc_core_hours),
        used_core_hours: format!("{:.2}", a.used_core_hours),
        overall_cpu_pct: pct((a.alloc_core_hours > 0.0).then(|| a.used_core_hours / a.alloc_core_hours)),
        energy: energy_line(a, &config.energy),
        kinds: a
            .kinds
            .iter()
            .map(|k| {
                let (fg, bg) = colours(k.severity);
                KindView {
                    title: k.title,
                    severity: severity_name(k.severity),
                    fg,
                    bg,
                    jobs: k.jobs,
                    cause: k.cause,
                    impact: k.impact,
                    solution: k.solution,
                    example: a
                        .jobs
                        .iter()
                        .find_map(|j| {
                            let f = j.findings.iter().find(|f| f.kind == k.kind)?;
                            Some(format!("job {}: {}", j.record.display_id, f.fix))
                        })
                        .unwrap_or_default(),
                }
            })
            .collect(),
        worst: a
            .worst
            .iter()
            .filter_map(|id| a.jobs.iter().find(|j| j.id() == *id))
            .map(|j| job_view(j, &base))
            .collect(),
        jobs: a.jobs.iter().map(|j| job_view(j, &base)).collect(),
        rightsize: a
            .rightsize
            .iter()
            .map(|r| RightSizeView { family: r.family.clone(), jobs: r.jobs, options: r.options() })
            .collect(),
        families: a
            .families
            .iter()
            .map(|f| FamilyView {
                name: f.name.clone(),
                points: f.points.iter().rev().map(|p| pct(p.mean_cpu_frac)).collect(),
            })
            .collect(),
        trend_headers: (0..TREND_PERIODS)
            .rev()
            .map(|k| if k == 0 { "this period".into() } else { format!("-{k}") })
            .collect(),
        web_link: if base.is_empty() {
            String::new()
        } else {
            format!("{base}/#/report?period={}&user={}", a.period.start, a.user)
        },
        feedback_link,
        reply_to: mail.reply_to.clone(),
        analysis_id,
    };
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    let render = |name: &'static str, source: &str| -> Result<String, RenderError> {
        let tmpl =
            env.template_from_named_str(name, source).map_err(|source| RenderError::Template { name, source })?;
        tmpl.render(&view).map_err(|source| RenderError::Template { name, source })
    };
    let html = render("report.html", &templates.html)?;
    let text = render("report.txt", &templates.text)?;
    let to = recipient(config, &a.user);
    let mut header = String::new();
    if !mail.reply_to.is_empty() {
        header.push_str(&format!("Reply-To: {}\n", mail.reply_to));
    }
    header.push_str(&format!("To: {to}\n"));
    for cc in &mail.cc {
        header.push_str(&format!("Cc: {cc}\n"));
    }
    header.push_str(&format!("Subject: {}\nContent-Type: text/html; charset=UTF-8\n\n", mail.subject));
    Ok(RenderedMail { to, subject: mail.subject.clone(), html, text, header })
}

#[cfg(test)]
mod tests;
