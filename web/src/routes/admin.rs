//! The admins' endpoints over every user: the period's energy ranking and outcome tracking.
//!
//! Both sum or compare all users' reports, so only `[web] admins` may call them (403 for
//! everyone else, coordinators included: a ranking of their accounts' users would still name
//! the others' totals beside them).

use super::{blocking, caller, choose_period, json, period_param, query, ApiError, ApiResult, WebState};
use crate::api::EnergyRanking;
use actix_web::{web, HttpRequest};

/// The caller, if an admin.
fn admin(req: &HttpRequest, state: &WebState) -> Result<String, ApiError> {
    let me = caller(req, state)?;
    if !state.admins.contains(&me) {
        return Err(ApiError::forbidden("admins only: this sums every user's data"));
    }
    Ok(me)
}

/// `GET /api/admin/energy?period=`: users and accounts by wasted kWh in the period.
pub(super) async fn energy(req: HttpRequest, state: web::Data<WebState>) -> ApiResult {
    admin(&req, &state)?;
    let q = query(&req)?;
    let wanted = period_param(&q)?;
    let (periods, ranking) = blocking(&state, move |b| {
        let periods = b.periods()?;
        let start = wanted.or_else(|| periods.last().map(|p| p.start));
        let ranking = match start {
            Some(start) if periods.iter().any(|p| p.start == start) => Some(b.energy_ranking(start)?),
            _ => None,
        };
        Ok((periods, ranking))
    })
    .await?;
    let period = choose_period(periods, wanted)?;
    let (users, accounts, factors) = ranking.unwrap_or_default();
    json(&EnergyRanking { period, factors, users, accounts })
}

/// `GET /api/admin/outcomes`: recurrence of findings after the mails, mailed vs held back.
pub(super) async fn outcomes(req: HttpRequest, state: web::Data<WebState>) -> ApiResult {
    admin(&req, &state)?;
    json(&blocking(&state, |b| b.outcomes()).await?)
}
