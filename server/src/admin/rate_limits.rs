//! Rate limits edited on the dashboard (SPEC.md §18.7 Rate limits): an
//! admin overrides one of the per-minute rates of [`limits::EDITABLE`]
//! (stored in the `admin_rate_limits` table, shared by every node) or
//! removes the override to go back to the server's setting. The node that
//! took the change applies it at once; every node reloads the overrides
//! with the IP rules, every [`super::ip_rules::REFRESH_EVERY`].
//!
//! Not owned here: the limits themselves (limits.rs), the table
//! (storage/admin.rs).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};

use super::api::{Api, audit_change, changer, reader};
use super::error::AdminError;
use crate::limits::{self, MAX_EDITABLE_PER_MINUTE};
use crate::state::ServerState;
use crate::storage::admin::RateLimitRecord;

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    /// Not one of [`limits::EDITABLE`].
    #[error("not a rate limit that can be changed here")]
    UnknownName,
    /// Above [`MAX_EDITABLE_PER_MINUTE`].
    #[error("per_minute must be 0 (off) to {MAX_EDITABLE_PER_MINUTE}")]
    OutOfRange,
}

/// The editable limit called `name`, checked.
///
/// # Errors
/// [`RateLimitError::UnknownName`].
pub fn editable(name: &str) -> Result<&'static str, RateLimitError> {
    limits::editable(name)
        .map(|e| e.name)
        .ok_or(RateLimitError::UnknownName)
}

/// Loads the overrides from storage into this node's limits.
///
/// # Errors
/// [`AdminError::Storage`], [`AdminError::Internal`].
pub async fn refresh(state: &Arc<ServerState>) -> Result<Vec<RateLimitRecord>, AdminError> {
    let records = state.storage.rate_limits().await?;
    let overrides: Vec<(String, u32)> = records
        .iter()
        .map(|r| (r.name.clone(), r.per_minute))
        .collect();
    state.limits.set_rate_overrides(&overrides);
    Ok(records)
}

/// One limit as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct LimitRow {
    /// The setting's name.
    name: &'static str,
    /// What it limits.
    description: &'static str,
    /// The server's setting, per minute (0: off).
    config: u32,
    /// The rate in force on this node, per minute (0: off).
    effective: u32,
    /// The dashboard's override, if any.
    #[serde(rename = "override")]
    overridden: Option<RateLimitRecord>,
}

/// `GET /admin/api/rate-limits`'s answer.
#[derive(Debug, Serialize)]
pub(super) struct Limits {
    limits: Vec<LimitRow>,
}

fn rows(state: &ServerState, records: &[RateLimitRecord]) -> Limits {
    Limits {
        limits: limits::EDITABLE
            .iter()
            .map(|e| LimitRow {
                name: e.name,
                description: e.description,
                config: state.limits.configured_rate(e.name).unwrap_or(0),
                effective: state.limits.rate(e.name),
                overridden: records.iter().find(|r| r.name == e.name).cloned(),
            })
            .collect(),
    }
}

/// `GET /admin/api/rate-limits`: the editable limits (any role).
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<axum::Json<Limits>, AdminError> {
    reader(&api, &headers).await?;
    let records = refresh(&api.state).await?;
    Ok(axum::Json(rows(&api.state, &records)))
}

/// The body of `PUT /admin/api/rate-limits`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewLimit {
    /// One of [`limits::EDITABLE`].
    name: String,
    /// Requests per minute; 0 turns the limit off.
    per_minute: u32,
}

/// `PUT /admin/api/rate-limits`: sets an override (role `admin`, audited).
pub(super) async fn set(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    body: Result<axum::Json<NewLimit>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::Json<Limits>, AdminError> {
    let who = changer(&api, &method, &headers).await?;
    let axum::Json(new) = body.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    let name = editable(&new.name).map_err(|e| AdminError::BadRequest(e.to_string()))?;
    if new.per_minute > MAX_EDITABLE_PER_MINUTE {
        return Err(AdminError::BadRequest(
            RateLimitError::OutOfRange.to_string(),
        ));
    }
    let record = RateLimitRecord {
        name: name.to_owned(),
        per_minute: new.per_minute,
        updated_by: who.name.clone(),
        updated_at_ms: api.state.now_ms(),
    };
    api.state.storage.set_rate_limit(&record).await?;
    audit_change(
        &api,
        &who,
        "rate_limit",
        format!("set {name} to {} per minute", record.per_minute),
    )
    .await?;
    let records = refresh(&api.state).await?;
    Ok(axum::Json(rows(&api.state, &records)))
}

/// The query of `DELETE /admin/api/rate-limits`.
#[derive(Deserialize)]
pub(super) struct Which {
    /// The limit's name.
    name: String,
}

/// `DELETE /admin/api/rate-limits?name=…`: removes an override, back to
/// the server's setting (role `admin`, audited).
pub(super) async fn remove(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<Which>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Limits>, AdminError> {
    let who = changer(&api, &method, &headers).await?;
    let Query(which) = query.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    let name = editable(&which.name).map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let removed = api.state.storage.remove_rate_limit(name).await?;
    if !removed {
        return Err(AdminError::NotFound(format!("no override of {name}")));
    }
    audit_change(
        &api,
        &who,
        "rate_limit",
        format!("removed the override of {name}"),
    )
    .await?;
    let records = refresh(&api.state).await?;
    Ok(axum::Json(rows(&api.state, &records)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_editable_names_pass() {
        for name in [
            "rate_send_per_account",
            "rate_group_change_per_account",
            "rate_group_change_per_group",
            "rate_prekey_upload_per_account",
            "rate_prekey_fetch_per_target",
        ] {
            assert_eq!(editable(name), Ok(name));
        }
        for bad in [
            "",
            "max_connections",
            "rate_send_per_account ",
            "RATE_LOGIN_PER_IP",
        ] {
            assert_eq!(editable(bad), Err(RateLimitError::UnknownName), "{bad:?}");
        }
    }
}
