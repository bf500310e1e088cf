//! Errors of the admin API and how they answer (SPEC.md §18.7): a status
//! and a JSON body `{"error": "<code>", ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::storage::StorageError;

/// What went wrong with an admin request.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No valid session cookie: log in first.
    #[error("not authenticated")]
    NotAuthenticated,
    /// Unknown name, wrong password or wrong TOTP code.
    #[error("unknown admin, wrong password or wrong code")]
    BadCredentials,
    /// This TOTP code was used already: wait for the next one.
    #[error("TOTP code already used")]
    TotpReplayed,
    /// Too many failures: retry after the given time.
    #[error("too many failed logins; retry in {retry_after_ms} ms")]
    TryLater {
        /// Milliseconds to wait.
        retry_after_ms: u64,
    },
    /// The session's role may not do this (viewers change nothing).
    #[error("the viewer role may not change settings")]
    Forbidden,
    /// A mutating request without the `X-Microbot-Admin: 1` header.
    #[error("missing X-Microbot-Admin header")]
    MissingCsrfHeader,
    /// The request body or parameters are invalid (the text says how).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// What the request names does not exist (the text says what).
    #[error("not found: {0}")]
    NotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A task failed (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl AdminError {
    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::NotAuthenticated => (StatusCode::UNAUTHORIZED, "not_authenticated"),
            AdminError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            AdminError::TotpReplayed => (StatusCode::UNAUTHORIZED, "totp_replayed"),
            AdminError::TryLater { .. } => (StatusCode::TOO_MANY_REQUESTS, "try_later"),
            AdminError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            AdminError::MissingCsrfHeader => (StatusCode::FORBIDDEN, "missing_csrf_header"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::Storage(_) | AdminError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

#[derive(serde::Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, error) = self.code();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(error = %self, "admin API request failed");
        }
        let retry_after_ms = match &self {
            AdminError::TryLater { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        };
        let message = match &self {
            AdminError::Storage(_) | AdminError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        (
            status,
            axum::Json(Body {
                error,
                message,
                retry_after_ms,
            }),
        )
            .into_response()
    }
}
