//! Whether the report mails change anything: for each user and finding kind, does the finding
//! come back after the first mail about it, and does the waste of the job families it was
//! about go down? With a holdout (`mail::holdout`: users whose mails are held back) the same is
//! measured for users who got no mail, and the difference is the mails' effect.
//!
//! Input: the stored periods' findings per (period, user) (`findings` table: the report JSON)
//! and what the outbox did with each user's mail (`sent`, `held`, or neither). Pure: the store
//! is read by `analysis::load::outcome_inputs`.
//!
//! Per (user, kind): the *first mail* is the first period in which the kind was found and the
//! user's mail was sent (`sent`, or `uncertain`: maybe delivered), or held back (the holdout
//! arm: the mail they would have had). Periods whose mail was neither (the period still open, an
//! opt-out, a failed mail) do not start a pair. The pair's *follow-up* is the user's next
//! period with jobs; the finding *recurs* when one of those jobs has it. A pair without a
//! follow-up yet counts as a pair, not in the rate.
//!
//! Waste before and after: the job families (job name normalised by [`family_of`]) that had
//! the kind in the first-mail period; per family the mean wasted core-hours per job in that
//! period and before, and after it. Families without jobs after are left out.
//!
//! Effect: recurrence rate mailed − held back, with a 95 % confidence interval by Newcombe's
//! hybrid score method (Newcombe 1998, method 10: the Wilson score intervals of both rates
//! combined), which keeps its coverage for small groups and rates near 0 or 1, where the
//! normal approximation (Wald) does not. Each rate has its own Wilson interval.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The normal quantile of a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// What became of a user's mail for a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailFate {
    /// Sent (or maybe: `uncertain`).
    Sent,
    /// Held back by the holdout.
    Held,
    /// No mail: none queued yet, opted out, failed, still queued.
    None,
}

/// The facts of one job that outcome tracking needs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFacts {
    pub family: String,
    /// Finding kinds (their snake_case names).
    pub kinds: BTreeSet<String>,
    pub wasted_core_hours: f64,
}

/// One user's stored period.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPeriod {
    pub period_start: u64,
    pub user: String,
    pub fate: MailFate,
    pub jobs: Vec<JobFacts>,
}

/// A job family's name: the job name in lower case with every run of digits one `#`, so
/// `run_001` and `run_002` (array tasks, numbered inputs) are one family.
pub fn family_of(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The jobs of a stored report (`findings` table JSON: `{"Report": UserAnalysis, ...}`).
pub fn facts_from_report_json(json: &str) -> Result<Vec<JobFacts>, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let jobs = value
        .get("Report")
        .and_then(|r| r.get("jobs"))
        .and_then(|j| j.as_array())
        .ok_or("no Report.jobs in the stored report")?;
    Ok(jobs
        .iter()
        .map(|j| JobFacts {
            family: family_of(j.get("name").and_then(|n| n.as_str()).unwrap_or("")),
            kinds: j
                .get("findings")
                .and_then(|f| f.as_array())
                .into_iter()
                .flatten()
                .filter_map(|f| f.get("kind").and_then(|k| k.as_str()).map(str::to_string))
                .collect(),
            wasted_core_hours: j
                .get("efficiency")
                .and_then(|e| e.get("wasted_core_secs"))
                .and_then(|w| w.as_f64())
                .map_or(0.0, |s| s / 3_600.0),
        })
        .collect())
}

/// A proportion with its 95 % Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// The Wilson score interval of `k` successes in `n` trials; `None` for `n = 0`.
pub fn wilson(k: u32, n: u32) -> Option<Rate> {
    if n == 0 {
        return None;
    }
    let (n, p) = (f64::from(n), f64::from(k.min(n)) / f64::from(n));
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(Rate { rate: p, low: (centre - half).max(0.0), high: (centre + half).min(1.0) })
}

/// A difference of two proportions with its 95 % interval (Newcombe's hybrid score method).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Difference {
    pub difference: f64,
    pub low: f64,
    pub high: f64,
}

/// `k1/n1 − k2/n2` with Newcombe's interval; `None` when a group is empty.
pub fn difference(k1: u32, n1: u32, k2: u32, n2: u32) -> Option<Difference> {
    let (a, b) = (wilson(k1, n1)?, wilson(k2, n2)?);
    let d = a.rate - b.rate;
    Some(Difference {
        difference: d,
        low: d - ((a.rate - a.low).powi(2) + (b.high - b.rate).powi(2)).sqrt(),
        high: d + ((a.high - a.rate).powi(2) + (b.rate - b.low).powi(2)).sqrt(),
    })
}

/// One group (mailed, or held back) for one finding kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Arm {
    /// (user, kind) pairs whose first mail (sent or held back) was about this kind.
    pub pairs: u32,
    /// Pairs with a follow-up period (the user ran jobs again).
    pub followed: u32,
    /// Follow-ups in which the kind was found again.
    pub recurred: u32,
    /// `recurred / followed` with its Wilson interval; `None` without follow-ups.
    pub recurrence: Option<Rate>,
    /// Job families with jobs before and after the first mail.
    pub families: u32,
    /// Mean over those families of the wasted core-hours per job, up to and including the
    /// first-mail period, and after it.
    pub wasted_core_hours_per_job_before: Option<f64>,
    pub wasted_core_hours_per_job_after: Option<f64>,
}

/// Outcomes of one finding kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindOutcome {
    pub kind: String,
    pub mailed: Arm,
    pub held: Arm,
    /// Recurrence mailed − held back, 95 % CI; `None` unless both groups have follow-ups.
    pub effect: Option<Difference>,
}

/// Outcomes of every kind found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcomes {
    /// Distinct periods in the input.
    pub periods: u32,
    /// How the intervals are computed.
    pub method: &'static str,
    pub kinds: Vec<KindOutcome>,
}

/// Running sums of one arm.
#[derive(Default)]
struct ArmSums {
    pairs: u32,
    followed: u32,
    recurred: u32,
    before: Vec<f64>,
    after: Vec<f64>,
}

impl ArmSums {
    fn finish(self) -> Arm {
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        Arm {
            pairs: self.pairs,
            followed: self.followed,
            recurred: self.recurred,
            recurrence: wilson(self.recurred, self.followed),
            families: self.before.len() as u32,
            wasted_core_hours_per_job_before: mean(&self.before),
            wasted_core_hours_per_job_after: mean(&self.after),
        }
    }
}

/// The outcomes over `periods` (any order).
pub fn outcomes(periods: &[UserPeriod]) -> Outcomes {
    let mut by_user: BTreeMap<&str, Vec<&UserPeriod>> = BTreeMap::new();
    for p in periods {
        by_user.entry(p.user.as_str()).or_default().push(p);
    }
    let mut sums: BTreeMap<&str, (ArmSums, ArmSums)> = BTreeMap::new();
    for list in by_user.values_mut() {
        list.sort_by_key(|p| p.period_start);
        let kinds: BTreeSet<&str> =
            list.iter().flat_map(|p| p.jobs.iter().flat_map(|j| j.kinds.iter().map(String::as_str))).collect();
        for kind in kinds {
            let has = |p: &UserPeriod| p.jobs.iter().any(|j| j.kinds.contains(kind));
            let Some(first) = list.iter().position(|p| p.fate != MailFate::None && has(p)) else { continue };
            let (mailed, held) = sums.entry(kind).or_default();
            let arm = if list[first].fate == MailFate::Held { held } else { mailed };
            arm.pairs += 1;
            if let Some(next) = list[first + 1..].iter().find(|p| !p.jobs.is_empty()) {
                arm.followed += 1;
                arm.recurred += u32::from(has(next));
            }
            let families: BTreeSet<&str> =
                list[first].jobs.iter().filter(|j| j.kinds.contains(kind)).map(|j| j.family.as_str()).collect();
            for family in families {
                let per_job = |ps: &[&UserPeriod]| {
                    let w: Vec<f64> = ps
                        .iter()
                        .flat_map(|p| p.jobs.iter().filter(|j| j.family == family).map(|j| j.wasted_core_hours))
                        .collect();
                    (!w.is_empty()).then(|| w.iter().sum::<f64>() / w.len() as f64)
                };
                if let (Some(before), Some(after)) = (per_job(&list[..=first]), per_job(&list[first + 1..])) {
                    arm.before.push(before);
                    arm.after.push(after);
                }
            }
        }
    }
    let kinds = sums
        .into_iter()
        .map(|(kind, (mailed, held))| {
            let (mailed, held) = (mailed.finish(), held.finish());
            let effect = difference(mailed.recurred, mailed.followed, held.recurred, held.followed);
            KindOutcome { kind: kind.to_string(), mailed, held, effect }
        })
        .collect();
    let periods_seen: BTreeSet<u64> = periods.iter().map(|p| p.period_start).collect();
    Outcomes {
        periods: periods_seen.len() as u32,
        method: "recurrence in the next period with jobs; 95 % intervals: Wilson score per rate, \
                 Newcombe hybrid score for the difference mailed − held back",
        kinds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn job(family: &str, kinds: &[&str], wasted: f64) -> JobFacts {
        JobFacts {
            family: family.into(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            wasted_core_hours: wasted,
        }
    }

    fn period(start: u64, user: &str, fate: MailFate, jobs: Vec<JobFacts>) -> UserPeriod {
        UserPeriod { period_start: start, user: user.into(), fate, jobs }
    }

    #[test]
    fn intervals_match_newcombes_published_example() {
        // Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 − 48/80 = 0.2000,
        // method 10 (hybrid score) gives 0.0524 to 0.3339.
        let d = difference(56, 70, 48, 80).unwrap();
        assert!(close(d.difference, 0.2, 1e-12));
        assert!(close(d.low, 0.0524, 5e-5) && close(d.high, 0.3339, 5e-5), "{d:?}");
        // Wilson's bounds are by definition the π with (p − π)² = z² π (1 − π) / n.
        let w = wilson(56, 70).unwrap();
        for pi in [w.low, w.high] {
            assert!(close((0.8 - pi).powi(2), Z95 * Z95 * pi * (1.0 - pi) / 70.0, 1e-12), "{w:?}");
        }
        // Edges: all or none recurring still give intervals inside [0, 1]; no trials, none.
        let (all, none) = (wilson(10, 10).unwrap(), wilson(0, 10).unwrap());
        assert!(close(all.high, 1.0, 1e-12) && all.low > 0.6 && close(none.low, 0.0, 1e-12) && none.high < 0.4);
        assert!(all.high <= 1.0 && none.low >= 0.0, "{all:?} {none:?}");
        assert_eq!(wilson(0, 0), None);
        assert_eq!(difference(1, 2, 0, 0), None);
    }

    /// `mailed` users and `held` users, each with kind `cpu_underuse` (and family `sim#`, `w0`
    /// wasted core-hours per job) in period 0; of each group the first `mailed_recur` /
    /// `held_recur` have it again in period 1 (with `w1` wasted), the others a clean job.
    fn synthetic(mailed: u32, mailed_recur: u32, held: u32, held_recur: u32) -> Vec<UserPeriod> {
        let mut out = Vec::new();
        for (arm, n, recur, fate) in
            [("m", mailed, mailed_recur, MailFate::Sent), ("h", held, held_recur, MailFate::Held)]
        {
            for i in 0..n {
                let user = format!("{arm}{i}");
                out.push(period(0, &user, fate, vec![job("sim#", &["cpu_underuse"], 4.0)]));
                let kinds: &[&str] = if i < recur { &["cpu_underuse"] } else { &[] };
                let wasted = if i < recur { 4.0 } else { 0.5 };
                out.push(period(100, &user, MailFate::None, vec![job("sim#", kinds, wasted)]));
            }
        }
        out
    }

    #[test]
    fn a_known_effect_is_inside_its_interval_and_no_effect_gives_an_interval_around_zero() {
        // True recurrence 40 % mailed, 70 % held back: effect −0.30.
        let o = outcomes(&synthetic(300, 120, 150, 105));
        assert_eq!((o.periods, o.kinds.len()), (2, 1));
        let k = &o.kinds[0];
        assert_eq!(
            (k.kind.as_str(), k.mailed.pairs, k.mailed.followed, k.mailed.recurred),
            ("cpu_underuse", 300, 300, 120)
        );
        assert_eq!((k.held.pairs, k.held.recurred), (150, 105));
        let e = k.effect.unwrap();
        assert!(close(e.difference, -0.30, 1e-12), "{e:?}");
        assert!(e.low < -0.30 && -0.30 < e.high && e.high < 0.0, "the effect is seen: {e:?}");
        // Waste per job of the family: 4 before; after 0.4 × 4 + 0.6 × 0.5 = 1.9 (mailed),
        // 0.7 × 4 + 0.3 × 0.5 = 2.95 (held back).
        assert_eq!(k.mailed.families, 300);
        assert!(close(k.mailed.wasted_core_hours_per_job_before.unwrap(), 4.0, 1e-9));
        assert!(close(k.mailed.wasted_core_hours_per_job_after.unwrap(), 1.9, 1e-9));
        assert!(close(k.held.wasted_core_hours_per_job_after.unwrap(), 2.95, 1e-9));

        let o = outcomes(&synthetic(200, 100, 100, 50));
        let e = o.kinds[0].effect.unwrap();
        assert!(e.difference == 0.0 && e.low < 0.0 && 0.0 < e.high, "{e:?}");
        // Without a holdout there is a recurrence rate but no effect.
        let o = outcomes(&synthetic(50, 10, 0, 0));
        assert_eq!(o.kinds[0].effect, None);
        let r = o.kinds[0].mailed.recurrence.unwrap();
        assert!(close(r.rate, 0.2, 1e-12) && r.low < 0.2 && 0.2 < r.high);
    }

    #[test]
    fn the_interval_covers_the_true_effect_in_about_95_percent_of_random_samples() {
        // xorshift: 400 simulated studies, 300 mailed (p = 0.4) and 150 held back (p = 0.7).
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut covered, mut zero_excluded) = (0, 0);
        for _ in 0..400 {
            let k1 = (0..300).filter(|_| uniform() < 0.4).count() as u32;
            let k2 = (0..150).filter(|_| uniform() < 0.7).count() as u32;
            let e = outcomes(&synthetic(300, k1, 150, k2)).kinds[0].effect.unwrap();
            covered += u32::from(e.low <= -0.3 && -0.3 <= e.high);
            zero_excluded += u32::from(e.high < 0.0);
        }
        // Binomial(400, 0.95): sd 4.4, so 360 is 4.5 sd below the mean.
        assert!(covered >= 360, "covered {covered} of 400");
        assert!(zero_excluded >= 390, "an effect of −0.3 with these groups is nearly always seen: {zero_excluded}");
    }

    #[test]
    fn pairs_start_at_the_first_mail_and_follow_up_at_the_next_period_with_jobs() {
        let cpu = |w: f64| job("run_#", &["cpu_underuse"], w);
        let periods = vec![
            // Found while the period was open (no mail yet): no pair starts there.
            period(0, "alice", MailFate::None, vec![cpu(8.0)]),
            period(10, "alice", MailFate::Sent, vec![cpu(6.0), job("other", &["memory_underused"], 1.0)]),
            // A period without jobs is skipped; the next with jobs is the follow-up.
            period(20, "alice", MailFate::None, vec![]),
            period(30, "alice", MailFate::None, vec![job("run_#", &[], 1.0)]),
            // bob was mailed, and has not run anything since: a pair without follow-up.
            period(10, "bob", MailFate::Sent, vec![cpu(2.0)]),
        ];
        let o = outcomes(&periods);
        let cpu = o.kinds.iter().find(|k| k.kind == "cpu_underuse").unwrap();
        assert_eq!((cpu.mailed.pairs, cpu.mailed.followed, cpu.mailed.recurred), (2, 1, 0));
        // alice's family run_#: before (8 + 6) / 2 = 7 per job, after 1.
        assert_eq!(cpu.mailed.families, 1);
        assert_eq!(cpu.mailed.wasted_core_hours_per_job_before, Some(7.0));
        assert_eq!(cpu.mailed.wasted_core_hours_per_job_after, Some(1.0));
        let mem = o.kinds.iter().find(|k| k.kind == "memory_underused").unwrap();
        assert_eq!((mem.mailed.pairs, mem.mailed.followed, mem.mailed.families), (1, 1, 0));
        assert_eq!(cpu.held, Arm::default());
    }

    #[test]
    fn families_and_the_stored_reports_facts() {
        assert_eq!(family_of("Run_001"), "run_#");
        assert_eq!(family_of(" sim-12-3.sh "), "sim-#-#.sh");
        let inputs = crate::analysis::summary::tests::alice_inputs();
        let a = crate::analysis::summary::analyze_user(
            "alice",
            crate::analysis::period::Period { start: 0, end: 10_000 },
            &inputs,
            &[],
            &crate::analysis::summary::tests::params(),
        );
        let json = crate::period::bundle::user_raw_json(&a).to_string();
        let facts = facts_from_report_json(&json).unwrap();
        assert_eq!(facts.len(), 3);
        // The sleeper: 2 cores for 600 s, 0.1 s of CPU used; CPU underuse found.
        assert_eq!(facts[0].family, "sleeper");
        assert!(facts[0].kinds.contains("cpu_underuse"), "{:?}", facts[0].kinds);
        assert!(close(facts[0].wasted_core_hours, (1_200.0 - 0.1) / 3_600.0, 1e-3), "{:?}", facts[0]);
        assert!(facts_from_report_json("{}").is_err() && facts_from_report_json("not json").is_err());
    }
}
