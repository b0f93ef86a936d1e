//! The site's one write: a user's own mail settings (opt out, quiet weekdays).
//!
//! `GET /api/settings` answers the caller's settings and a CSRF token; `POST /api/settings`
//! changes them, only the caller's (a body naming someone else is refused, admins included:
//! an admin who wants to silence a user has `[mail] opt_out`), and only from the site's own
//! pages ([`crate::csrf`]). `GET /api/settings/all` lists everyone's choices for admins.

use super::{blocking, caller, json, ApiError, ApiResult, WebState};
use crate::api::{AllSettings, MailPrefs, SettingsChange, SettingsView};
use crate::csrf::{check_write, CsrfError, Provenance};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use turingwatch_config::WEEKDAYS;

impl From<CsrfError> for ApiError {
    fn from(err: CsrfError) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "csrf", err.to_string())
    }
}

/// The days as given, checked, without repeats, Monday first.
pub(super) fn quiet_days(days: &[String]) -> Result<Vec<String>, ApiError> {
    for day in days {
        if !WEEKDAYS.contains(&day.as_str()) {
            return Err(ApiError::bad_request(format!("{day:?} is not a weekday; use {}", WEEKDAYS.join(", "))));
        }
    }
    Ok(WEEKDAYS.iter().filter(|d| days.iter().any(|x| x == *d)).map(|d| d.to_string()).collect())
}

async fn view(state: &web::Data<WebState>, me: String) -> Result<SettingsView, ApiError> {
    let token = state.csrf.token(&me);
    let (prefs, site_quiet_days) = blocking(state, move |b| Ok((b.mail_prefs(&me)?, b.site_quiet_days()))).await?;
    Ok(SettingsView { prefs, csrf_token: token, site_quiet_days })
}

pub(super) async fn get(req: HttpRequest, state: web::Data<WebState>) -> ApiResult {
    let me = caller(&req, &state)?;
    json(&view(&state, me).await?)
}

fn header_text<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(super) async fn post(req: HttpRequest, state: web::Data<WebState>, body: web::Bytes) -> ApiResult {
    let me = caller(&req, &state)?;
    let provenance = Provenance {
        sec_fetch_site: header_text(&req, "sec-fetch-site"),
        origin: header_text(&req, "origin"),
        hosts: [header_text(&req, "host"), header_text(&req, "x-forwarded-host")].into_iter().flatten().collect(),
        token: header_text(&req, "x-csrf-token"),
    };
    if let Err(err) = check_write(&state.csrf, &me, &provenance) {
        tracing::warn!(user = %me, error = %err, "settings change refused as cross-site");
        return Err(err.into());
    }
    let json_body = header_text(&req, header::CONTENT_TYPE.as_str())
        .is_some_and(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !json_body {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the settings as application/json",
        ));
    }
    let change: SettingsChange =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the settings do not parse: {e}")))?;
    if let Some(other) = change.user.as_deref().filter(|u| *u != me) {
        return Err(ApiError::forbidden(format!("you may change only your own settings, not those of {other}")));
    }
    let prefs = MailPrefs {
        user: me.clone(),
        opted_out: change.opted_out,
        quiet_days: quiet_days(&change.quiet_days)?,
        ..MailPrefs::default()
    };
    tracing::info!(user = %me, opted_out = prefs.opted_out, quiet_days = ?prefs.quiet_days, "mail settings changed");
    blocking(&state, move |b| b.set_mail_prefs(&prefs)).await?;
    json(&view(&state, me).await?)
}

pub(super) async fn all(req: HttpRequest, state: web::Data<WebState>) -> ApiResult {
    let me = caller(&req, &state)?;
    if !state.admins.contains(&me) {
        return Err(ApiError::forbidden("only admins see everyone's mail settings"));
    }
    let (users, opted_out_by_admin) = blocking(&state, |b| b.all_mail_prefs()).await?;
    json(&AllSettings { users, opted_out_by_admin })
}
