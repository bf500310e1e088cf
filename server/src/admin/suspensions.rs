//! Account and device suspensions from the dashboard (SPEC.md §18.7
//! "Suspensions"): an admin (role `admin`) suspends an account (all its
//! devices) or one device, and lifts it again; each change is stored
//! (shared by every node), audited (`suspension`), and a suspension closes
//! the target's open connections on every node through the bus with
//! `ACCOUNT_SUSPENDED`. Logins are refused by auth/devices.rs.
//!
//! Not owned here: the table (storage/suspension.rs).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use microbot_protocol::transport::ErrorCode;
use serde::{Deserialize, Serialize};

use super::api::{Api, audit_change, changer, reader};
use super::error::AdminError;
use crate::bus::BusEvent;
use crate::state::ServerState;
use crate::storage::suspension::{SuspensionRecord, SuspensionTarget};

/// A login that passed its suspension check just before the suspension
/// was stored subscribes to the bus a moment later; the disconnect is
/// published again after this long to reach it too.
pub const REPEAT_DISCONNECT_AFTER: Duration = Duration::from_secs(1);

/// One suspension as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct Row {
    /// `account` or `device`.
    kind: &'static str,
    /// The account (a device's owner).
    username: String,
    /// The device, for a device suspension.
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<u64>,
    /// The admin who suspended it.
    created_by: String,
    /// When, ms since the epoch.
    created_at_ms: u64,
}

/// `GET /admin/api/suspensions`' answer.
#[derive(Debug, Serialize)]
pub(super) struct Rows {
    suspensions: Vec<Row>,
}

fn rows(records: Vec<SuspensionRecord>) -> Rows {
    Rows {
        suspensions: records
            .into_iter()
            .map(|r| Row {
                kind: r.target.kind(),
                username: r.username,
                device_id: match r.target {
                    SuspensionTarget::Device(id) => Some(id),
                    SuspensionTarget::Account(_) => None,
                },
                created_by: r.created_by,
                created_at_ms: r.created_at_ms,
            })
            .collect(),
    }
}

async fn list_rows(state: &Arc<ServerState>) -> Result<Rows, AdminError> {
    Ok(rows(state.storage.suspensions().await?))
}

/// `GET /admin/api/suspensions` (any role).
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<axum::Json<Rows>, AdminError> {
    reader(&api, &headers).await?;
    Ok(axum::Json(list_rows(&api.state).await?))
}

/// What a request names: `{"kind": "account", "username"}` or
/// `{"kind": "device", "username", "device_id"}` (the device must be the
/// account's, removed or not).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Which {
    /// `account` or `device`.
    kind: String,
    /// The account's username.
    username: String,
    /// The device, for `device`.
    device_id: Option<u64>,
}

/// Resolves `which` to a target and the devices whose connections it
/// concerns.
async fn resolve(
    state: &ServerState,
    which: &Which,
) -> Result<(SuspensionTarget, Vec<u64>), AdminError> {
    let account = state
        .storage
        .account_by_username(&which.username)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no account {:?}", which.username)))?;
    match (which.kind.as_str(), which.device_id) {
        ("account", None) => {
            let devices = state
                .storage
                .account_devices(account.id)
                .await?
                .into_iter()
                .map(|d| d.id)
                .collect();
            Ok((SuspensionTarget::Account(account.id), devices))
        }
        ("device", Some(device_id)) => match state.storage.device(device_id).await? {
            Some(d) if d.account_id == account.id && !d.removed => {
                Ok((SuspensionTarget::Device(device_id), vec![device_id]))
            }
            _ => Err(AdminError::NotFound(format!(
                "{} has no device {device_id}",
                which.username
            ))),
        },
        ("account", Some(_)) => Err(AdminError::BadRequest(
            "an account suspension names no device_id".to_owned(),
        )),
        ("device", None) => Err(AdminError::BadRequest(
            "a device suspension needs device_id".to_owned(),
        )),
        _ => Err(AdminError::BadRequest(
            "kind must be account or device".to_owned(),
        )),
    }
}

fn describe(which: &Which) -> String {
    match which.device_id {
        Some(id) if which.kind == "device" => format!("device {id} of {}", which.username),
        _ => format!("account {}", which.username),
    }
}

/// Closes the connections of `devices` on every node, now and once more
/// after [`REPEAT_DISCONNECT_AFTER`].
fn disconnect(state: &Arc<ServerState>, devices: Vec<u64>) {
    for &device in &devices {
        state
            .bus
            .publish(device, BusEvent::Disconnect(ErrorCode::AccountSuspended));
    }
    let state = Arc::clone(state);
    tokio::spawn(async move {
        tokio::time::sleep(REPEAT_DISCONNECT_AFTER).await;
        for device in devices {
            state
                .bus
                .publish(device, BusEvent::Disconnect(ErrorCode::AccountSuspended));
        }
    });
}

/// `POST /admin/api/suspensions`: suspends (role `admin`, audited).
pub(super) async fn suspend(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    body: Result<axum::Json<Which>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::Json<Rows>, AdminError> {
    let who = changer(&api, &method, &headers).await?;
    let axum::Json(which) = body.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    let what = describe(&which);
    let by = who.name.clone();
    let (target, devices) = resolve(&api.state, &which).await?;
    let added = api
        .state
        .storage
        .suspend(target, &by, api.state.now_ms())
        .await?;
    if !added {
        return Err(AdminError::BadRequest(format!(
            "{what} is suspended already"
        )));
    }
    disconnect(&api.state, devices);
    audit_change(&api, &who, "suspension", format!("suspended {what}")).await?;
    tracing::info!(admin = %who.name, target = %what, "suspended from the dashboard");
    Ok(axum::Json(list_rows(&api.state).await?))
}

/// The query of `DELETE /admin/api/suspensions`: `kind`, `username` and,
/// for a device, `device_id`.
#[derive(Deserialize)]
pub(super) struct WhichQuery {
    kind: String,
    username: String,
    device_id: Option<u64>,
}

/// `DELETE /admin/api/suspensions?kind=…&username=…[&device_id=…]`: lifts
/// a suspension (role `admin`, audited).
pub(super) async fn unsuspend(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<WhichQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Rows>, AdminError> {
    let who = changer(&api, &method, &headers).await?;
    let Query(q) = query.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    let which = Which {
        kind: q.kind,
        username: q.username,
        device_id: q.device_id,
    };
    let what = describe(&which);
    let (target, _) = resolve(&api.state, &which).await?;
    let lifted = api.state.storage.unsuspend(target).await?;
    if !lifted {
        return Err(AdminError::NotFound(format!("{what} is not suspended")));
    }
    audit_change(
        &api,
        &who,
        "suspension",
        format!("lifted the suspension of {what}"),
    )
    .await?;
    Ok(axum::Json(list_rows(&api.state).await?))
}
