//! Account life cycle (SPEC.md §13.1, §13.5): registration, confirmation,
//! password change and deletion, and the password + second-factor checks the
//! other handlers share.
//!
//! Not owned here: devices (devices.rs), TOTP arithmetic (totp.rs).

use std::sync::Arc;

use microbot_protocol::transport::{
    ChangePasswordRequest, ConfirmRegistrationRequest, DeleteAccountRequest, ErrorCode,
    RegisterRequest, RegisterResponse, second_factor,
};

use super::AuthError;
use super::{recovery, totp, valid_password, valid_username};
use crate::bus::BusEvent;
use crate::error::Internal;
use crate::state::ServerState;
use crate::storage::{AccountRecord, NewAccount};

/// Checks `password` against the PHC string `phc` (argon2 work, run off
/// the async threads); without `phc`, spends the same work on a dummy hash
/// and answers false, so an unknown username costs what a wrong password
/// costs.
async fn verify_password(
    state: &Arc<ServerState>,
    password: &str,
    phc: Option<&str>,
) -> Result<bool, AuthError> {
    let password = zeroize::Zeroizing::new(password.to_owned());
    let phc = phc.map(str::to_owned);
    state
        .blocking(move |state| {
            Ok(match phc {
                Some(phc) => state.passwords.verify(&password, &phc),
                None => {
                    state.passwords.verify_dummy(&password);
                    false
                }
            })
        })
        .await
}

/// Looks the account up and checks the password. Unknown usernames cost the
/// same argon2 work and give the same error as a wrong password.
///
/// # Errors
/// [`AuthError::UnknownUserOrWrongPassword`], storage errors.
pub async fn check_password(
    state: &Arc<ServerState>,
    username: &str,
    password: &str,
) -> Result<AccountRecord, AuthError> {
    let Some(account) = state.storage.account_by_username(username).await? else {
        verify_password(state, password, None).await?;
        return Err(AuthError::UnknownUserOrWrongPassword);
    };
    if verify_password(state, password, Some(&account.password_hash)).await? {
        Ok(account)
    } else {
        Err(AuthError::UnknownUserOrWrongPassword)
    }
}

/// Checks a TOTP code and records its step, refusing a step accepted before.
///
/// # Errors
/// [`AuthError::WrongTotp`], [`AuthError::TotpReplayed`], storage errors.
pub async fn check_totp(
    state: &ServerState,
    account: &AccountRecord,
    code: &str,
) -> Result<(), AuthError> {
    let step = totp::matching_step(
        &account.totp_secret,
        code,
        state.now_secs(),
        state.config.totp_skew_steps,
    )
    .ok_or(AuthError::WrongTotp)?;
    if !state.storage.consume_totp_step(account.id, step).await? {
        return Err(AuthError::TotpReplayed);
    }
    Ok(())
}

/// Checks a second factor: a TOTP code as [`check_totp`], or a recovery
/// code, consumed when accepted (SPEC.md §13.4).
///
/// # Errors
/// [`AuthError::WrongTotp`], [`AuthError::TotpReplayed`],
/// [`AuthError::WrongRecoveryCode`], storage errors.
pub async fn check_second_factor(
    state: &ServerState,
    account: &AccountRecord,
    factor: &second_factor::Factor,
) -> Result<(), AuthError> {
    match factor {
        second_factor::Factor::TotpCode(code) => check_totp(state, account, code).await,
        second_factor::Factor::RecoveryCode(code) => {
            if state
                .storage
                .consume_recovery_code(account.id, &recovery::hash(code))
                .await?
            {
                Ok(())
            } else {
                Err(AuthError::WrongRecoveryCode)
            }
        }
    }
}

/// The logged-in account, with its password checked.
async fn own_account_with_password(
    state: &Arc<ServerState>,
    account_id: i64,
    password: &str,
) -> Result<AccountRecord, AuthError> {
    let account = state
        .storage
        .account_by_id(account_id)
        .await?
        .ok_or(AuthError::AccountGone)?;
    if !verify_password(state, password, Some(&account.password_hash)).await? {
        return Err(AuthError::WrongPassword);
    }
    Ok(account)
}

/// Password + fresh TOTP of the logged-in account.
///
/// # Errors
/// Credential errors as above.
pub async fn check_password_and_totp(
    state: &Arc<ServerState>,
    account_id: i64,
    password: &str,
    totp_code: &str,
) -> Result<AccountRecord, AuthError> {
    let account = own_account_with_password(state, account_id, password).await?;
    check_totp(state, &account, totp_code).await?;
    Ok(account)
}

/// Password + a second factor (TOTP or recovery code) of the logged-in
/// account.
///
/// # Errors
/// Credential errors as above.
pub async fn check_password_and_factor(
    state: &Arc<ServerState>,
    account_id: i64,
    password: &str,
    factor: &second_factor::Factor,
) -> Result<AccountRecord, AuthError> {
    let account = own_account_with_password(state, account_id, password).await?;
    check_second_factor(state, &account, factor).await?;
    Ok(account)
}

/// `RegisterRequest`: creates an inactive account.
///
/// # Errors
/// [`AuthError::InvalidUsername`], [`AuthError::InvalidPassword`], storage
/// errors (`UsernameTaken`), internal failures.
pub async fn register(
    state: &Arc<ServerState>,
    request: RegisterRequest,
) -> Result<RegisterResponse, AuthError> {
    if !valid_username(&request.username) {
        return Err(AuthError::InvalidUsername);
    }
    if !valid_password(&request.password) {
        return Err(AuthError::InvalidPassword);
    }
    let username = request.username.clone();
    let bot = request.bot;
    // Argon2 and the key material run on a blocking thread; the row is
    // written from here.
    let (password_hash, secret, otpauth_uri, totp_secret_base32, codes) = state
        .blocking(move |state| -> Result<_, AuthError> {
            let password = zeroize::Zeroizing::new(request.password);
            let password_hash = state.passwords.hash(&password).map_err(Internal::new)?;
            let secret = totp::new_secret(&*state.rng);
            let (otpauth_uri, totp_secret_base32) =
                totp::enrolment(&secret, &request.username).map_err(Internal::new)?;
            let codes = recovery::generate(&*state.rng);
            Ok((
                password_hash,
                secret,
                otpauth_uri,
                totp_secret_base32,
                codes,
            ))
        })
        .await?;
    let hashes: Vec<[u8; 32]> = codes.iter().map(|c| recovery::hash(c)).collect();
    state
        .storage
        .create_account(&NewAccount {
            username: &username,
            password_hash: &password_hash,
            totp_secret: &secret,
            recovery_code_hashes: &hashes,
            now_ms: state.now_ms(),
            bot,
        })
        .await?;
    tracing::info!(%username, bot, "account registered (inactive)");
    Ok(RegisterResponse {
        otpauth_uri,
        totp_secret_base32,
        recovery_codes: codes.iter().map(|c| c.to_string()).collect(),
    })
}

/// `ConfirmRegistrationRequest`: activates the account with a first code.
///
/// # Errors
/// Credential errors, [`AuthError::AccountAlreadyActive`].
pub async fn confirm(
    state: &Arc<ServerState>,
    request: ConfirmRegistrationRequest,
) -> Result<(), AuthError> {
    let password = zeroize::Zeroizing::new(request.password);
    let account = check_password(state, &request.username, &password).await?;
    if account.active {
        // Never confirm an active account's password alone (a password
        // oracle): without a code valid in the window the answer is the
        // wrong-password one. The code is not consumed.
        let valid = totp::matching_step(
            &account.totp_secret,
            &request.totp_code,
            state.now_secs(),
            state.config.totp_skew_steps,
        )
        .is_some();
        if !valid {
            return Err(AuthError::UnknownUserOrWrongPassword);
        }
        return Err(AuthError::AccountAlreadyActive);
    }
    check_totp(state, &account, &request.totp_code).await?;
    state.storage.activate_account(account.id).await?;
    tracing::info!(username = %account.username, "account confirmed");
    Ok(())
}

/// `ChangePasswordRequest` for the logged-in account.
///
/// # Errors
/// [`AuthError::InvalidNewPassword`], credential errors.
pub async fn change_password(
    state: &Arc<ServerState>,
    account_id: i64,
    request: ChangePasswordRequest,
) -> Result<(), AuthError> {
    if !valid_password(&request.new_password) {
        return Err(AuthError::InvalidNewPassword);
    }
    let current = zeroize::Zeroizing::new(request.current_password);
    let new = zeroize::Zeroizing::new(request.new_password);
    check_password_and_totp(state, account_id, &current, &request.totp_code).await?;
    let hash = state
        .blocking(move |state| {
            state
                .passwords
                .hash(&new)
                .map_err(|e| AuthError::from(Internal::new(e)))
        })
        .await?;
    state.storage.set_password_hash(account_id, &hash).await?;
    tracing::info!(account_id, "password changed");
    Ok(())
}

/// `DeleteAccountRequest`: deletes the account and disconnects its devices.
///
/// # Errors
/// Credential errors.
pub async fn delete_account(
    state: &Arc<ServerState>,
    account_id: i64,
    request: DeleteAccountRequest,
) -> Result<(), AuthError> {
    let password = zeroize::Zeroizing::new(request.password);
    check_password_and_totp(state, account_id, &password, &request.totp_code).await?;
    let devices = state.storage.delete_account(account_id).await?;
    for device in devices {
        state
            .bus
            .publish(device, BusEvent::Disconnect(ErrorCode::DeviceRemoved));
    }
    tracing::info!(account_id, "account deleted");
    Ok(())
}
