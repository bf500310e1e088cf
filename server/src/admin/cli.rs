//! `microbot-server admin add NAME --role admin|viewer` and `admin remove
//! NAME` (SPEC.md §18.7): operator accounts are made on the server's
//! machine, never over the network.
//!
//! `add` reads the password from the first line of standard input, prints
//! the TOTP secret and its `otpauth://` URI, then reads the first code from
//! the next line (up to three tries); the admin is active once a code was
//! right, and removed again when none was.

use std::io::{BufRead, Write};

use zeroize::Zeroizing;

use super::session::valid_name;
use crate::auth::{totp, valid_password};
use crate::config::Config;
use crate::storage::admin::AdminRole;

/// The `admin` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Add an operator account: prompts for its password and first TOTP code.
    Add {
        /// Login name: 1-64 of a-z 0-9 _ . -
        name: String,
        /// `admin` (may change settings) or `viewer` (read only).
        #[arg(long)]
        role: String,
    },
    /// Remove an operator account and end its sessions.
    Remove {
        /// Login name.
        name: String,
    },
}

/// What went wrong running an `admin` subcommand.
#[derive(Debug, thiserror::Error)]
pub enum AdminCliError {
    /// The name is not 1-64 of `[a-z0-9_.-]`.
    #[error("invalid admin name: use 1-64 of a-z 0-9 _ . -")]
    InvalidName,
    /// The role is neither `admin` nor `viewer`.
    #[error("invalid role {0:?}: use admin or viewer")]
    InvalidRole(String),
    /// The password does not meet the users' password rule.
    #[error("the password must be 8-1024 bytes")]
    WeakPassword,
    /// An admin with that name exists already.
    #[error("an admin called {0:?} exists already; remove it first")]
    NameTaken(String),
    /// No admin with that name.
    #[error("no admin called {0:?}")]
    Unknown(String),
    /// Three wrong first codes: the admin was not added.
    #[error("no correct TOTP code; the admin was not added (check the authenticator's clock)")]
    NotConfirmed,
    /// Standard input ended or failed.
    #[error("reading standard input: {0}")]
    Input(String),
    /// Hashing, TOTP set-up or storage failed.
    #[error("{0}")]
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> AdminCliError {
    AdminCliError::Failed(e.to_string())
}

fn read_line(input: &mut dyn BufRead) -> Result<Zeroizing<String>, AdminCliError> {
    let mut line = Zeroizing::new(String::new());
    let n = input
        .read_line(&mut line)
        .map_err(|e| AdminCliError::Input(e.to_string()))?;
    if n == 0 {
        return Err(AdminCliError::Input("end of input".to_owned()));
    }
    Ok(Zeroizing::new(
        line.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

/// Runs `command` against the configured storage. Called from a plain
/// thread (never from inside a runtime): the storage is async, so the
/// command drives it on a current-thread runtime of its own.
///
/// # Errors
/// [`AdminCliError`].
pub fn run(
    config: &Config,
    command: AdminCommand,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AdminCliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?
        .block_on(run_on_storage(config, command, input, out))
}

async fn run_on_storage(
    config: &Config,
    command: AdminCommand,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AdminCliError> {
    let storage = crate::storage::open(config).await.map_err(failed)?;
    match command {
        AdminCommand::Remove { name } => {
            if storage.remove_admin(&name).await.map_err(failed)? {
                writeln!(out, "admin {name} removed").map_err(failed)?;
                Ok(())
            } else {
                Err(AdminCliError::Unknown(name))
            }
        }
        AdminCommand::Add { name, role } => {
            if !valid_name(&name) {
                return Err(AdminCliError::InvalidName);
            }
            let role = AdminRole::parse(&role).ok_or(AdminCliError::InvalidRole(role))?;
            write!(out, "password for {name}: ").map_err(failed)?;
            out.flush().map_err(failed)?;
            let password = read_line(input)?;
            if !valid_password(&password) {
                return Err(AdminCliError::WeakPassword);
            }
            let hasher = crate::auth::password::PasswordHasher::new(
                config.argon2_memory_kib,
                config.argon2_iterations,
                config.argon2_parallelism,
            )
            .map_err(failed)?;
            let hash = hasher.hash(&password).map_err(failed)?;
            let secret = totp::new_secret(&crate::clock::SystemRng);
            let (uri, base32) = totp::enrolment(&secret, &name).map_err(failed)?;
            if !storage
                .create_admin(&name, role, &hash, &secret, crate::clock::system_now_ms())
                .await
                .map_err(failed)?
            {
                return Err(AdminCliError::NameTaken(name));
            }
            let admin = storage
                .admin_by_name(&name)
                .await
                .map_err(failed)?
                .ok_or_else(|| failed("the new admin disappeared"))?;
            writeln!(
                out,
                "\nTOTP secret (base32): {base32}\notpauth URI: {uri}\nAdd it to an authenticator app."
            )
            .map_err(failed)?;
            for _ in 0..3 {
                write!(out, "first code: ").map_err(failed)?;
                out.flush().map_err(failed)?;
                let code = read_line(input)?;
                if let Some(step) = totp::matching_step(
                    &secret,
                    &code,
                    crate::clock::system_now_ms() / 1000,
                    config.totp_skew_steps,
                ) && storage
                    .consume_admin_totp_step(admin.id, step)
                    .await
                    .map_err(failed)?
                {
                    storage.activate_admin(admin.id).await.map_err(failed)?;
                    writeln!(out, "admin {name} added (role {})", role.as_str()).map_err(failed)?;
                    return Ok(());
                }
                writeln!(out, "wrong code").map_err(failed)?;
            }
            storage.remove_admin(&name).await.map_err(failed)?;
            Err(AdminCliError::NotConfirmed)
        }
    }
}
