//! What the site needs from the daemon, as a trait the daemon implements over its store.
//!
//! The web crate cannot depend on the daemon (the daemon depends on it), and the identity rules
//! must be testable without a database: so data comes through this trait, and the unit tests
//! use an in-memory fake. Data methods are blocking (redb reads) and are called inside
//! `web::block`; the coordinator list comes from sacctmgr, a child process, so it is async.

use crate::api::{EnergyRow, JobDetail, JobSummary, MailPrefs, OutcomesView, PeriodCoverage, PeriodInfo, StoredReport};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Why the backend could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("store: {0}")]
    Store(String),
    #[error("SLURM: {0}")]
    Slurm(String),
}

/// Which jobs a listing wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    /// Jobs that ran at some time in `[from, to)`.
    pub from: u64,
    pub to: u64,
    /// Owners to include; `None` means every user (admins only).
    pub users: Option<Vec<String>>,
}

/// SLURM's account coordinators and the users of each account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coordination {
    /// Coordinator → accounts they coordinate.
    pub accounts_of: BTreeMap<String, BTreeSet<String>>,
    /// Account → users with an association in it.
    pub users_of: BTreeMap<String, BTreeSet<String>>,
}

impl Coordination {
    /// Accounts `user` coordinates.
    pub fn accounts_coordinated_by(&self, user: &str) -> BTreeSet<String> {
        self.accounts_of.get(user).cloned().unwrap_or_default()
    }

    /// Users of the accounts `user` coordinates (without `user`).
    pub fn users_coordinated_by(&self, user: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for account in self.accounts_of.get(user).into_iter().flatten() {
            out.extend(self.users_of.get(account).into_iter().flatten().cloned());
        }
        out.remove(user);
        out
    }
}

/// A boxed future that need not be `Send` (actix handlers run on one thread each).
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// The daemon's side of the site.
pub trait Backend: Send + Sync + 'static {
    /// All periods, oldest first.
    fn periods(&self) -> Result<Vec<PeriodInfo>, BackendError>;
    /// The sampling coverage of the period starting at `period_start`, once analysed.
    fn period_coverage(&self, period_start: u64) -> Result<Option<PeriodCoverage>, BackendError>;
    /// One user's report for the period starting at `period_start`.
    fn report(&self, period_start: u64, user: &str) -> Result<Option<StoredReport>, BackendError>;
    /// Jobs matching `query`, in any order (the web layer filters, sorts and pages).
    fn jobs(&self, query: &JobQuery) -> Result<Vec<JobSummary>, BackendError>;
    /// Whose job `id` is: (user, account). Cheap (no samples, no analysis), so the web layer
    /// can refuse a caller before [`Backend::job`] loads and analyses anything.
    fn job_owner(&self, id: u64) -> Result<Option<(String, String)>, BackendError>;
    /// One job with steps, findings and time series.
    fn job(&self, id: u64) -> Result<Option<JobDetail>, BackendError>;
    /// A user's mail settings (defaults when they chose none), with `opted_out_by_admin` set.
    fn mail_prefs(&self, user: &str) -> Result<MailPrefs, BackendError>;
    /// Stores a user's mail settings (`user`, `opted_out`, `quiet_days` of `prefs`; the web
    /// layer has checked the caller and the days).
    fn set_mail_prefs(&self, prefs: &MailPrefs) -> Result<(), BackendError>;
    /// Every user's stored settings, and `[mail] opt_out`.
    fn all_mail_prefs(&self) -> Result<(Vec<MailPrefs>, Vec<String>), BackendError>;
    /// `[mail] quiet_days`.
    fn site_quiet_days(&self) -> Vec<String>;
    /// The current coordinator list (cached by the implementation).
    fn coordination(&self) -> LocalFuture<Result<Arc<Coordination>, BackendError>>;
    /// The period's energy per user and per account (every user: admins only), with the
    /// factors used, from the stored reports.
    fn energy_ranking(&self, period_start: u64) -> Result<(Vec<EnergyRow>, Vec<EnergyRow>, String), BackendError>;
    /// Outcome tracking over every stored period (every user: admins only).
    fn outcomes(&self) -> Result<OutcomesView, BackendError>;
}
