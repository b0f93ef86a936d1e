use super::*;
use crate::analysis::period::Period;
use crate::analysis::summary::analyze_user;
use crate::analysis::summary::tests::{alice_inputs, params};

fn rendered(templates: &Templates, config: &Config) -> RenderedMail {
    let a = analyze_user("alice", Period { start: 0, end: 10_000 }, &alice_inputs(), &[], &params());
    let spec =
        PeriodSpec::from_config(&turingwatch_config::AnalysisConfig { timezone: "UTC".into(), ..Default::default() })
            .unwrap();
    render_mail(&a, config, &spec, templates).unwrap()
}

#[test]
fn html_is_self_contained_and_names_the_wasteful_jobs() {
    let mut config = Config::default();
    config.mail.domain = "example.org".into();
    config.mail.web_base_url = "https://hpc.example.org/tw/".into();
    config.mail.feedback_link = "https://forms.example.org/f?x=1".into();
    config.mail.cc = vec!["boss@example.org".into()];
    let m = rendered(&Templates::load("").unwrap(), &config);
    assert_eq!(m.to, "alice@example.org");
    for forbidden in ["<script", "<img", "<link", "class="] {
        assert!(!m.html.contains(forbidden), "{forbidden} in the HTML");
    }
    assert!(m.html.contains("Job 1</a>") && m.html.contains("Job 2</a>"), "worst jobs missing");
    assert!(m.html.contains("CPU Underusage") && m.html.contains("--mem=64M"));
    // minijinja's HTML escaping writes `/` as `&#x2f;`, which every HTML parser decodes.
    assert!(m.html.contains("https:&#x2f;&#x2f;hpc.example.org&#x2f;tw&#x2f;#&#x2f;job&#x2f;1"), "{}", m.html);
    assert!(m.text.contains("https://hpc.example.org/tw/#/report?period=0&user=alice"), "{}", m.text);
    assert!(m.html.contains("letter_ref=0:alice"), "feedback link");
    assert!(m.text.contains("Job 1 sleeper") && m.text.contains("Fix: --mem=64M"), "{}", m.text);
    assert!(m.header.starts_with("To: alice@example.org\nCc: boss@example.org\nSubject: "));
    assert!(m.header.ends_with("\n\n"));
}

#[test]
fn an_address_mapping_and_admin_templates_are_used() {
    let dir = std::env::temp_dir().join(format!("tw-templates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report.txt"), "Hello {{ user }}: {{ job_count }} jobs").unwrap();
    let mut config = Config::default();
    config.mail.addresses.insert("alice".into(), "a.smith@example.org".into());
    let m = rendered(&Templates::load(dir.to_str().unwrap()).unwrap(), &config);
    assert_eq!(m.text, "Hello alice: 3 jobs");
    assert_eq!(m.to, "a.smith@example.org");
    assert!(m.html.contains("<html>"), "the built-in HTML stays when only report.txt is replaced");
}

#[test]
fn user_text_is_escaped_in_html() {
    let mut inputs = alice_inputs();
    inputs[0].job.name = "<b>x</b>".into();
    let a = analyze_user("alice", Period { start: 0, end: 10_000 }, &inputs, &[], &params());
    let spec = PeriodSpec::new(604_800, 0, 0, jiff::tz::TimeZone::UTC).unwrap();
    let m = render_mail(&a, &Config::default(), &spec, &Templates::load("").unwrap()).unwrap();
    assert!(m.html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;") || m.html.contains("&lt;b&gt;x&lt;/b&gt;"));
    assert!(!m.html.contains("<b>x</b>"));
}

#[test]
fn a_running_job_reads_no_data_yet_never_zero_percent() {
    assert_eq!(pct_text(None, Some(crate::analysis::efficiency::NoData::Running)), "no data yet");
    assert_eq!(pct_text(None, None), "n/a");
    assert_eq!(pct_text(Some(0.4), None), "40.0 %");
}

#[test]
fn page_fault_churn_brings_the_preload_command_into_the_mail() {
    // Job 3 runs fine but faults 5 000 pages/s throughout; it is not among the worst jobs.
    let mut inputs = alice_inputs();
    let churn: Vec<crate::sample::StepSample> = (0..30u64)
        .map(|i| crate::sample::StepSample {
            at: 1_000 + i * 20,
            cpu_user_cs: i * 2_000,
            rss_kib: 90 << 10,
            minor_faults: i * 100_000,
            ..Default::default()
        })
        .collect();
    let key = crate::store::SeriesKey { job: inputs[2].job.id, step: crate::job::StepId::BATCH, node: "n1".into() };
    inputs[2].samples.insert(key, churn);
    let a = analyze_user("alice", Period { start: 0, end: 10_000 }, &inputs, &[], &params());
    assert!(!a.worst.contains(&inputs[2].job.id));
    let spec = PeriodSpec::new(604_800, 0, 0, jiff::tz::TimeZone::UTC).unwrap();
    let m = render_mail(&a, &Config::default(), &spec, &Templates::load("").unwrap()).unwrap();
    let command = "job 3: LD_PRELOAD=/usr/lib/turingwatch/libturingwatch_preload.so <your program>";
    assert!(m.text.contains("Page Fault Churn") && m.text.contains(command), "{}", m.text);
    assert!(m.html.contains("libturingwatch_preload.so &lt;your program&gt;"), "{}", m.html);
}

#[test]
fn the_mail_gives_the_periods_energy_and_its_waste_and_says_it_is_estimated() {
    let mut config = Config::default();
    config.mail.domain = "example.org".into();
    let m = rendered(&Templates::load("").unwrap(), &config);
    let line = m.text.lines().find(|l| l.starts_with("Energy: ")).unwrap_or_else(|| panic!("{}", m.text));
    assert!(line.contains("CO2e") && line.contains("wasted") || line.contains("not used"), "{line}");
    assert!(
        line.ends_with(
            "estimated from the site's power factors (factors: 12 W/core, 0.3725 W/GB, 300 W/GPU, PUE 1.4, 300 g CO2e/kWh)"
        ),
        "{line}"
    );
    // Job 1 (the sleeper: CPU underusage) is among the jobs to look at first, with its own
    // energy and waste: all of its cores idle, so nearly all of its estimate is waste.
    let job1 = m.text.split("Job 1 sleeper").nth(1).unwrap_or_else(|| panic!("{}", m.text));
    let energy = job1.lines().find(|l| l.trim_start().starts_with("Energy ")).unwrap_or_else(|| panic!("{}", m.text));
    // By hand: 2 idle cores × 12 W + 0.54 GB unused × 0.3725 W, for 600 s, × PUE 1.4 = 5.65 Wh.
    assert!(energy.ends_with("of which 6 Wh (2 g CO2e) wasted, estimated"), "{energy}");
    assert!(m.html.contains("<tr><td>Energy</td><td>"), "{}", m.html);
    assert!(m.html.contains("<td style=\"border:1px solid #ddd;\">Energy</td>"), "{}", m.html);
}
