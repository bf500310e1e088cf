//! The dashboard's JSON API under `/admin/api/` (SPEC.md §18.7).
//!
//! Every route but `POST /login` needs a live session; every mutating
//! request (`POST`, `PUT`, `DELETE`) needs the `X-Microbot-Admin: 1`
//! header; changes of settings need the `admin` role and are written to
//! the audit log.
//!
//! Not owned here: credentials and cookies (session.rs).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::AdminError;
use super::session::{self, CSRF_HEADER, LoginGuard};
use crate::state::ServerState;
use crate::storage::admin::{AdminRole, AdminSession, AuditEntry};

/// What the API handlers share.
#[derive(Clone)]
pub struct Api {
    /// The server.
    pub state: Arc<ServerState>,
    /// Admin login back-off.
    pub guard: Arc<LoginGuard>,
    /// Whether the listener speaks TLS (cookies get `Secure`).
    pub secure: bool,
    /// This node's chart history.
    pub rollups: Arc<super::rollups::Rollups>,
    /// This node's analytics feed (flushed before a report).
    pub analytics: Arc<super::analytics::Flusher>,
}

/// The `/admin/api` router.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/session", get(whoami))
        .route("/audit", get(audit))
        .route("/overview", get(super::live::get_overview))
        .route("/live", get(super::live::live))
        .route("/series", get(super::live::series))
        .route("/report", get(super::report::get_report))
        .route(
            "/ip-rules",
            get(super::ip_rules::list)
                .post(super::ip_rules::add)
                .delete(super::ip_rules::remove),
        )
        .route(
            "/rate-limits",
            get(super::rate_limits::list)
                .put(super::rate_limits::set)
                .delete(super::rate_limits::remove),
        )
        .route(
            "/suspensions",
            get(super::suspensions::list)
                .post(super::suspensions::suspend)
                .delete(super::suspensions::unsuspend),
        )
        .route(
            "/layout",
            get(super::layout::get_layout).put(super::layout::put_layout),
        )
        .fallback(unknown)
        .with_state(api)
}

/// Refuses a mutating request without the CSRF header.
///
/// # Errors
/// [`AdminError::MissingCsrfHeader`].
pub fn check_csrf(method: &Method, headers: &HeaderMap) -> Result<(), AdminError> {
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    match headers.get(CSRF_HEADER) {
        Some(v) if v.as_bytes() == b"1" => Ok(()),
        _ => Err(AdminError::MissingCsrfHeader),
    }
}

/// The session of a read request.
///
/// # Errors
/// [`AdminError::NotAuthenticated`].
pub async fn reader(api: &Api, headers: &HeaderMap) -> Result<AdminSession, AdminError> {
    session::current(&api.state, headers).await
}

/// The session of a settings change: authenticated, CSRF header, `admin`
/// role.
///
/// # Errors
/// [`AdminError::NotAuthenticated`], [`AdminError::MissingCsrfHeader`],
/// [`AdminError::Forbidden`].
pub async fn changer(
    api: &Api,
    method: &Method,
    headers: &HeaderMap,
) -> Result<AdminSession, AdminError> {
    let who = session::current(&api.state, headers).await?;
    check_csrf(method, headers)?;
    if who.role != AdminRole::Admin {
        return Err(AdminError::Forbidden);
    }
    Ok(who)
}

/// Writes one audit entry for `who`.
///
/// # Errors
/// [`AdminError::Storage`].
pub async fn audit_change(
    api: &Api,
    who: &AdminSession,
    action: &str,
    detail: String,
) -> Result<(), AdminError> {
    let entry = AuditEntry {
        at_ms: api.state.now_ms(),
        admin: who.name.clone(),
        action: action.to_owned(),
        detail,
    };
    api.state.storage.append_audit(&entry).await?;
    Ok(())
}

#[derive(Deserialize)]
struct LoginBody {
    name: String,
    password: String,
    totp: String,
}

impl Drop for LoginBody {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
        zeroize::Zeroize::zeroize(&mut self.totp);
    }
}

#[derive(Serialize)]
struct SessionBody {
    name: String,
    role: &'static str,
    expires_at_ms: u64,
}

impl From<&AdminSession> for SessionBody {
    fn from(s: &AdminSession) -> Self {
        Self {
            name: s.name.clone(),
            role: s.role.as_str(),
            expires_at_ms: s.expires_at_ms,
        }
    }
}

async fn login(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    body: Result<axum::Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AdminError> {
    check_csrf(&method, &headers)?;
    let axum::Json(mut body) = body.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    let password = Zeroizing::new(std::mem::take(&mut body.password));
    let code = Zeroizing::new(std::mem::take(&mut body.totp));
    let name = std::mem::take(&mut body.name);
    let new = session::login(&api.state, &api.guard, name, password, code).await?;
    let cookie = HeaderValue::from_str(&session::set_cookie(&new.token, api.secure))
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    let mut response = axum::Json(SessionBody::from(&new.session)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

async fn logout(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    let who = reader(&api, &headers).await?;
    check_csrf(&method, &headers)?;
    session::logout(&api.state, &headers).await?;
    audit_change(&api, &who, "logout", "signed out".to_owned()).await?;
    let mut response = axum::Json(serde_json_ok()).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie(api.secure))
            .map_err(|e| AdminError::Internal(e.to_string()))?,
    );
    Ok(response)
}

#[derive(Serialize)]
struct Ok_ {
    ok: bool,
}

fn serde_json_ok() -> Ok_ {
    Ok_ { ok: true }
}

async fn whoami(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<axum::Json<SessionBody>, AdminError> {
    let who = reader(&api, &headers).await?;
    Ok(axum::Json(SessionBody::from(&who)))
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<u32>,
}

async fn audit(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Vec<AuditEntry>>, AdminError> {
    reader(&api, &headers).await?;
    let Query(query) = query.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    let limit = query.limit.unwrap_or(200).clamp(1, 1000);
    let entries = api.state.storage.audit_log(limit).await?;
    Ok(axum::Json(entries))
}

/// Unknown API paths: 401 without a session (nothing is revealed), else 404.
async fn unknown(State(api): State<Api>, headers: HeaderMap) -> Result<Response, AdminError> {
    reader(&api, &headers).await?;
    Ok((
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json_error("not_found")),
    )
        .into_response())
}

#[derive(Serialize)]
struct ErrorOnly {
    error: &'static str,
}

fn serde_json_error(error: &'static str) -> ErrorOnly {
    ErrorOnly { error }
}
