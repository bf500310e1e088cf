//! The admin listener (SPEC.md §18.3, §18.7): one axum router on
//! `metrics_listen` serving `/metrics`, `/healthz` and `/readyz` for
//! scrapers and load balancers, the dashboard's static files under
//! `/admin/` and its JSON API under `/admin/api/`.
//!
//! Transport rule (the same as the WebSocket listener's): on a loopback
//! address the listener speaks plain HTTP; on any other address it speaks
//! HTTPS with the server's certificate (TLS 1.3). Every connection carries
//! one request (HTTP/1.1 without keep-alive, as the hand-written responder
//! before it), so a scraper reading to end of stream sees the whole answer.
//!
//! Not owned here: the values behind `/metrics` (metrics.rs), what the
//! dashboard shows (`web/dashboard`).

pub(crate) mod analytics;
pub(crate) mod api;
pub mod cli;
pub(crate) mod cluster;
pub(crate) mod error;
mod health;
pub(crate) mod ip_rules;
pub(crate) mod layout;
pub(crate) mod live;
pub(crate) mod minutes;
pub(crate) mod rate_limits;
pub mod report;
pub(crate) mod rollups;
mod serve;
pub(crate) mod session;
mod static_files;
pub(crate) mod suspensions;

pub(crate) use serve::{AdminTls, serve, tls_acceptor};

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::ServerState;

/// The whole admin router for `state`; `secure`: the listener speaks TLS;
/// `rollups`: this node's chart history (fed by [`cluster::publish_loop`]);
/// `analytics`: this node's analytics feed (run by [`analytics::run`]).
pub fn router(
    state: Arc<ServerState>,
    secure: bool,
    rollups: Arc<rollups::Rollups>,
    analytics: Arc<analytics::Flusher>,
) -> Router {
    let api = api::Api {
        guard: Arc::new(session::LoginGuard::new(&state)),
        state: Arc::clone(&state),
        secure,
        rollups,
        analytics,
    };
    let mut router = Router::new()
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .nest_service("/admin/api", api::router(api));
    if let Some(dir) = &state.config.admin_dashboard_dir {
        router = router.merge(static_files::router(dir));
    }
    router
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Unknown paths: 404 for reads, 405 for anything else (as before axum).
async fn fallback(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        text(StatusCode::NOT_FOUND, "not found\n")
    } else {
        method_not_allowed().await
    }
}

async fn method_not_allowed() -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
}

/// A `text/plain` answer.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}
