//! The site's energy and outcome figures: a job's energy with its factors, the period's ranking
//! of users and accounts by wasted kWh, and outcome tracking in the web crate's types.
//!
//! The ranking sums the per-job energies of the stored reports (what the analysis computed
//! when it last refreshed the period, the same figures as the mails), so it reads no samples.

use crate::analysis::energy::{factors_text, Energy, EnergySource};
use crate::analysis::findings::FindingKind;
use crate::analysis::outcome::Outcomes;
use std::collections::BTreeMap;
use turingwatch_config::EnergyConfig;
use turingwatch_web::api::{EnergyRow, JobEnergy, OutcomesView};

/// A job's energy as the site shows it.
pub fn job_energy_view(e: &Energy, config: &EnergyConfig) -> JobEnergy {
    JobEnergy {
        kwh: e.kwh,
        co2e_g: e.co2e_g,
        wasted_kwh: e.wasted_kwh,
        wasted_co2e_g: e.wasted_co2e_g,
        source: match e.source {
            EnergySource::Measured => "measured",
            EnergySource::Mixed => "mixed",
            EnergySource::Estimated => "estimated",
        }
        .into(),
        factors: factors_text(config),
    }
}

/// Users and accounts of the stored reports (their JSON), most wasted kWh first. Jobs without
/// an energy figure (never ran) count as jobs with none; a report that does not parse is skipped.
pub fn ranking<'a>(reports: impl Iterator<Item = &'a str>) -> (Vec<EnergyRow>, Vec<EnergyRow>) {
    let mut users: BTreeMap<String, EnergyRow> = BTreeMap::new();
    let mut accounts: BTreeMap<String, EnergyRow> = BTreeMap::new();
    for text in reports {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else { continue };
        let jobs = value.get("Report").and_then(|r| r.get("jobs")).and_then(|j| j.as_array());
        for job in jobs.into_iter().flatten() {
            let name = |key: &str| job.get(key).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let figure = |key: &str| job.get("energy").and_then(|e| e.get(key)).and_then(|v| v.as_f64()).unwrap_or(0.0);
            for (map, key) in [(&mut users, name("user")), (&mut accounts, name("account"))] {
                let row = map.entry(key.clone()).or_insert_with(|| EnergyRow {
                    name: key,
                    jobs: 0,
                    kwh: 0.0,
                    co2e_g: 0.0,
                    wasted_kwh: 0.0,
                    wasted_co2e_g: 0.0,
                });
                row.jobs += 1;
                row.kwh += figure("kwh");
                row.co2e_g += figure("co2e_g");
                row.wasted_kwh += figure("wasted_kwh");
                row.wasted_co2e_g += figure("wasted_co2e_g");
            }
        }
    }
    let sorted = |map: BTreeMap<String, EnergyRow>| {
        let mut rows: Vec<EnergyRow> = map.into_values().collect();
        rows.sort_by(|a, b| b.wasted_kwh.total_cmp(&a.wasted_kwh).then_with(|| a.name.cmp(&b.name)));
        rows
    };
    (sorted(users), sorted(accounts))
}

/// The outcomes in the web crate's types, each kind with its title.
pub fn outcomes_view(o: &Outcomes, holdout_share: f64, unreadable_reports: u32) -> Result<OutcomesView, String> {
    let value = serde_json::to_value(o).map_err(|e| e.to_string())?;
    let mut view: OutcomesView = serde_json::from_value(value).map_err(|e| e.to_string())?;
    view.holdout_share = holdout_share;
    view.unreadable_reports = unreadable_reports;
    for k in &mut view.kinds {
        k.title = FindingKind::ALL
            .iter()
            .find(|f| serde_json::to_value(f).ok().and_then(|v| v.as_str().map(|s| s == k.kind)).unwrap_or(false))
            .map_or_else(|| k.kind.clone(), |f| f.title().to_string());
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::outcome::{outcomes, JobFacts, MailFate, UserPeriod};

    #[test]
    fn users_and_accounts_are_ranked_by_wasted_energy_from_the_stored_reports() {
        let report = |jobs: &str| format!(r#"{{"Report": {{"jobs": [{jobs}]}}}}"#);
        let job = |user: &str, account: &str, wasted: f64| {
            format!(
                r#"{{"user": "{user}", "account": "{account}", "energy": {{"kwh": {}, "co2e_g": 1.0, "wasted_kwh": {wasted}, "wasted_co2e_g": 0.5, "source": "estimated"}}}}"#,
                wasted * 2.0
            )
        };
        let a = report(&[job("alice", "phys", 1.0), job("alice", "phys", 0.5)].join(","));
        let b = report(
            &[job("bob", "chem", 2.0), r#"{"user": "bob", "account": "chem", "energy": null}"#.into()].join(","),
        );
        let (users, accounts) = ranking([a.as_str(), b.as_str(), "not json"].into_iter());
        let names: Vec<(&str, u32, f64)> = users.iter().map(|r| (r.name.as_str(), r.jobs, r.wasted_kwh)).collect();
        assert_eq!(names, [("bob", 2, 2.0), ("alice", 2, 1.5)]);
        assert_eq!((accounts[1].name.as_str(), accounts[1].kwh, accounts[1].wasted_co2e_g), ("phys", 3.0, 1.0));
    }

    #[test]
    fn outcomes_convert_with_titles() {
        let p = |user: &str, start: u64, fate, kinds: &[&str]| UserPeriod {
            period_start: start,
            user: user.into(),
            fate,
            jobs: vec![JobFacts {
                family: "x".into(),
                kinds: kinds.iter().map(|k| k.to_string()).collect(),
                wasted_core_hours: 1.0,
            }],
        };
        let o = outcomes(&[
            p("a", 0, MailFate::Sent, &["cpu_underuse"]),
            p("a", 1, MailFate::None, &[]),
            p("b", 0, MailFate::Held, &["cpu_underuse"]),
            p("b", 1, MailFate::None, &["cpu_underuse"]),
        ]);
        let v = outcomes_view(&o, 0.25, 1).unwrap();
        assert_eq!((v.holdout_share, v.unreadable_reports, v.periods), (0.25, 1, 2));
        assert_eq!((v.kinds[0].kind.as_str(), v.kinds[0].title.as_str()), ("cpu_underuse", "CPU Underusage"));
        let e = v.kinds[0].effect.unwrap();
        assert_eq!(e.difference, -1.0);
        assert!(e.low >= -1.0 && e.high > e.low);
    }
}
