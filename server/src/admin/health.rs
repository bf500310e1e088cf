//! `/metrics`, `/healthz` and `/readyz` (SPEC.md §18.3, §18.6): the same
//! answers as the hand-written responder they replace.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::text;
use crate::metrics;
use crate::state::ServerState;

/// The Prometheus text exposition.
pub(super) async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    let body = metrics::exposition(&state).await;
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// 200 while the process answers.
pub(super) async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n")
}

/// 200 while the node may be sent traffic, else 503 with the reason.
pub(super) async fn readyz(State(state): State<Arc<ServerState>>) -> Response {
    match metrics::readiness(&state) {
        Ok(()) => text(StatusCode::OK, "ready\n"),
        Err(reason) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}
