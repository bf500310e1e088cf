//! The dashboard's built files under `/admin/` (SPEC.md §18.7), from the
//! configured `admin_dashboard_dir`, every answer with a strict Content
//! Security Policy: scripts, styles, images and connections from this
//! origin only, no inline script, no framing.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tower_http::services::ServeDir;

use crate::state::ServerState;

/// The policy sent with every dashboard file.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `/admin/*` served from `dir` (`/admin/` is its `index.html`).
pub(super) fn router(dir: &Path) -> Router<Arc<ServerState>> {
    let files = ServeDir::new(dir).append_index_html_on_directories(true);
    Router::new()
        .nest_service("/admin", files)
        .layer(axum::middleware::map_response(harden))
}

/// Adds the security headers to a dashboard answer.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
