//! Admin login and sessions (SPEC.md §18.7): password (argon2id) and TOTP
//! with the users' rules (one use per TOTP step, back-off on failures),
//! then a random session token in an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` when the listener speaks TLS), stored only as its SHA-256.
//!
//! Not owned here: the storage of admins (storage/admin.rs), the routes
//! (api.rs).

use std::sync::Arc;

use axum::http::HeaderMap;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::error::AdminError;
use crate::auth::totp;
use crate::limits::backoff::{Backoffs, Outcome};
use crate::limits::shared::Backoff;
use crate::state::ServerState;
use crate::storage::admin::{AdminRole, AdminSession, AuditEntry};

/// Name of the session cookie.
pub const COOKIE: &str = "microbot_admin";
/// How long a session lasts.
pub const SESSION_SECS: u64 = 12 * 60 * 60;
/// Header every mutating API request must carry (with value `1`): a page
/// on another origin cannot set it without a CORS preflight, which this
/// listener never grants.
pub const CSRF_HEADER: &str = "x-microbot-admin";
/// Longest admin name.
pub const MAX_NAME: usize = 64;

/// Login back-off of this node, keyed by admin name.
pub struct LoginGuard {
    backoffs: Backoffs,
}

impl LoginGuard {
    /// Back-off with the server's login parameters.
    pub fn new(state: &ServerState) -> Self {
        Self {
            backoffs: Backoffs::new(Backoff {
                after: state.config.login_backoff_after_failures,
                base_ms: state.config.login_backoff_base_ms,
                max_ms: state.config.login_backoff_max_ms,
            }),
        }
    }
}

/// A new session: the token for the cookie and who it belongs to.
pub struct NewSession {
    /// The cookie value (hex of 32 random bytes).
    pub token: Zeroizing<String>,
    /// Name and role.
    pub session: AdminSession,
}

/// Valid admin names: 1–64 of `[a-z0-9_.-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Checks name, password and TOTP code and opens a session.
///
/// # Errors
/// [`AdminError::BadCredentials`] (also for an unknown or unconfirmed
/// admin, after the same argon2 work), [`AdminError::TotpReplayed`],
/// [`AdminError::TryLater`] while backed off, [`AdminError::Storage`].
pub async fn login(
    state: &Arc<ServerState>,
    guard: &Arc<LoginGuard>,
    name: String,
    password: Zeroizing<String>,
    code: Zeroizing<String>,
) -> Result<NewSession, AdminError> {
    if !valid_name(&name) || password.len() > 1024 || code.len() > 16 {
        return Err(AdminError::BadCredentials);
    }
    let key = format!("admin:{name}");
    guard
        .backoffs
        .begin(&key)
        .map_err(|retry_after_ms| AdminError::TryLater { retry_after_ms })?;
    let checked = check(state, &name, password, &code).await;
    let outcome = match &checked {
        Ok(_) => Outcome::Success,
        Err(AdminError::BadCredentials | AdminError::TotpReplayed) => Outcome::Failure,
        _ => Outcome::Neutral,
    };
    guard.backoffs.finish(&key, outcome);
    let (admin_id, role) = checked?;
    let mut raw = Zeroizing::new([0u8; 32]);
    state.rng.fill(raw.as_mut_slice());
    let token = Zeroizing::new(hex::encode(raw.as_slice()));
    let hash = token_hash(&token);
    let now = state.now_ms();
    let expires_at_ms = now + SESSION_SECS * 1000;
    state
        .storage
        .create_admin_session(&hash, admin_id, expires_at_ms, now)
        .await?;
    state
        .storage
        .append_audit(&AuditEntry {
            at_ms: now,
            admin: name.clone(),
            action: "login".to_owned(),
            detail: "signed in".to_owned(),
        })
        .await?;
    Ok(NewSession {
        token,
        session: AdminSession {
            admin_id,
            name,
            role,
            expires_at_ms,
        },
    })
}

async fn check(
    state: &Arc<ServerState>,
    name: &str,
    password: Zeroizing<String>,
    code: &str,
) -> Result<(i64, AdminRole), AdminError> {
    let admin = state.storage.admin_by_name(name).await?;
    // Argon2 runs on a blocking thread; an unknown name costs the same work.
    let phc = admin.as_ref().map(|a| a.password_hash.clone());
    let verifier = Arc::clone(state);
    let verified = tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verifier.passwords.verify(&password, &phc),
        None => {
            verifier.passwords.verify_dummy(&password);
            false
        }
    })
    .await
    .map_err(|e| AdminError::Internal(e.to_string()))?;
    let Some(admin) = admin else {
        return Err(AdminError::BadCredentials);
    };
    if !verified || !admin.active {
        return Err(AdminError::BadCredentials);
    }
    let step = totp::matching_step(
        &admin.totp_secret,
        code,
        state.now_secs(),
        state.config.totp_skew_steps,
    )
    .ok_or(AdminError::BadCredentials)?;
    if !state
        .storage
        .consume_admin_totp_step(admin.id, step)
        .await?
    {
        return Err(AdminError::TotpReplayed);
    }
    Ok((admin.id, admin.role))
}

/// The session token from the request's cookie, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == COOKIE && v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| v.to_owned())
        })
}

/// The live session the request's cookie names.
///
/// # Errors
/// [`AdminError::NotAuthenticated`], [`AdminError::Storage`].
pub async fn current(
    state: &Arc<ServerState>,
    headers: &HeaderMap,
) -> Result<AdminSession, AdminError> {
    let token = cookie_token(headers).ok_or(AdminError::NotAuthenticated)?;
    let hash = token_hash(&token);
    state
        .storage
        .admin_session(&hash, state.now_ms())
        .await?
        .ok_or(AdminError::NotAuthenticated)
}

/// Ends the session the request's cookie names (if any).
///
/// # Errors
/// [`AdminError::Storage`].
pub async fn logout(state: &Arc<ServerState>, headers: &HeaderMap) -> Result<(), AdminError> {
    if let Some(token) = cookie_token(headers) {
        let hash = token_hash(&token);
        state.storage.delete_admin_session(&hash).await?;
    }
    Ok(())
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={token}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{secure}"
    )
}

/// The `Set-Cookie` value that deletes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}
