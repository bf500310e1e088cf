//! `register`, `login` and `link`: creating an account (TOTP enrolment shown
//! as a QR code), enrolling this device on it with a new identity (SPEC.md
//! §13 through the SDK), or receiving the account's identity and contacts
//! from an existing device through a provisioning slot (§12.14).
//!
//! A registration is resumable: the profile remembers whether the account
//! was confirmed and whether this device was enrolled, so running
//! `register` again after a wrong code continues where it stopped instead
//! of failing on a taken username.

use std::future::Future;
use std::time::Duration;

use microbot_client::{
    Account, Enrolment, IdentitySource, LinkRequest, Provisioned, SecondFactor, ServerConfig,
    confirm_registration,
};
use zeroize::Zeroizing;

use crate::cli::{Link, Login, Register};
use crate::error::{self, CliError};
use crate::profile::{self, ProfileMeta};
use crate::session::{Ctx, account_config};
use crate::{prompt, qr};

/// How often a wrong code may be retyped in one run.
const CODE_ATTEMPTS: u32 = 3;

/// Runs `future` but gives up after the connect timeout.
async fn bounded<T>(
    ctx: &Ctx,
    addr: &str,
    future: impl Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    tokio::time::timeout(ctx.connect_timeout, future)
        .await
        .unwrap_or_else(|_| {
            Err(CliError::Unreachable {
                addr: addr.to_owned(),
                reason: format!("no answer within {} s", ctx.connect_timeout.as_secs()),
            })
        })
}

/// Reads codes and tries `attempt` with each until one is accepted, a
/// non-code error occurs, the attempts run out, or input ends.
async fn with_codes<F, Fut>(prompt_text: &str, mut attempt: F) -> Result<(), CliError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(), CliError>>,
{
    let mut last = None;
    for tries in 1..=CODE_ATTEMPTS {
        let code = tokio::task::block_in_place(|| prompt::code(prompt_text))?;
        let Some(code) = code else {
            return Err(last.unwrap_or_else(|| CliError::Input("no code given".into())));
        };
        match attempt(code).await {
            Ok(()) => return Ok(()),
            Err(error @ CliError::WrongCode(_)) if tries < CODE_ATTEMPTS => {
                // A script may pipe several codes; only a person is told.
                if prompt::interactive() {
                    eprintln!("{error}; try again");
                }
                last = Some(error);
            }
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| CliError::Input("no code given".into())))
}

fn ask_password(username: &str, new: bool) -> Result<Zeroizing<String>, CliError> {
    let password = prompt::password(&format!("Password for {username}: "))?;
    if new && std::env::var(prompt::PASSWORD_ENV).is_err() && prompt::interactive() {
        let again = prompt::password("Repeat the password: ")?;
        if *again != *password {
            return Err(CliError::Input("the passwords differ".into()));
        }
    }
    Ok(password)
}

/// Which second factor enrolment asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CodeKind {
    /// A TOTP code.
    Totp,
    /// A TOTP code right after another was used to confirm the account
    /// (each time step is accepted once, so it must be the next one).
    NextTotp,
    /// A recovery code.
    Recovery,
}

/// Enrols this device (with codes read until one works) and uploads its
/// keys by connecting once.
async fn enrol_device(
    ctx: &Ctx,
    meta: &mut ProfileMeta,
    server: &ServerConfig,
    password: &Zeroizing<String>,
    kind: CodeKind,
    provisioned: Option<&Provisioned>,
    device_name: &str,
) -> Result<(), CliError> {
    let profile = &ctx.profile;
    let prompt_text = match kind {
        CodeKind::Recovery => "Recovery code: ",
        CodeKind::NextTotp => "Next code from your authenticator: ",
        CodeKind::Totp => "Code from your authenticator: ",
    };
    with_codes(prompt_text, |code| {
        let factor = match kind {
            CodeKind::Recovery => SecondFactor::RecoveryCode(Zeroizing::new(code)),
            CodeKind::Totp | CodeKind::NextTotp => SecondFactor::Totp(code),
        };
        // A linked device gets the account's identity (`provisioned`),
        // otherwise a new one.
        let enrolment = Enrolment {
            username: meta.username.clone(),
            password: password.clone(),
            second_factor: factor,
            identity: IdentitySource::New,
        };
        let store = profile.store_config();
        let addr = meta.server.clone();
        let username = meta.username.clone();
        let server = server.clone();
        async move {
            let result = bounded(ctx, &addr, async {
                let config = account_config(device_name);
                match provisioned {
                    Some(provisioned) => {
                        Account::enrol_provisioned(
                            &store,
                            server,
                            provisioned,
                            enrolment.password,
                            enrolment.second_factor,
                            config,
                        )
                        .await
                    }
                    None => Account::enrol(&store, server, enrolment, config).await,
                }
                .map_err(|e| error::auth(&addr, &username, e))
            })
            .await;
            match result {
                // Closed here; reopened below to connect.
                Ok((account, _events)) => {
                    drop(account);
                    Ok(())
                }
                Err(error) => {
                    profile.remove_unused_store();
                    Err(error)
                }
            }
        }
    })
    .await?;
    meta.enrolled = true;
    profile.save(meta)?;
    // Connect once: the first login uploads this device's prekeys, so
    // contacts can start sessions with it right away.
    let online = ctx.online().await?;
    let device_id = online.account.device_id();
    online.close().await;
    println!(
        "This device is enrolled as {} device {device_id} (profile {} in {}).",
        meta.username,
        profile.name(),
        profile.dir().display()
    );
    Ok(())
}

/// `microbot register USERNAME --server ADDR --cert-sha256 HEX`.
pub async fn register(ctx: &Ctx, args: Register) -> Result<(), CliError> {
    let profile = &ctx.profile;
    let server = profile::server_config(&args.server.server, &args.server.cert_sha256)?;
    let mut meta = match profile.load()? {
        Some(meta) if meta.enrolled => return Err(CliError::ProfileExists(profile.name().into())),
        Some(meta) if meta.username != args.username => {
            return Err(CliError::Input(format!(
                "profile {} holds the unfinished registration of {}; finish it with \
                 `microbot register {}` or choose another --profile",
                profile.name(),
                meta.username,
                meta.username
            )));
        }
        Some(mut meta) => {
            meta.server = args.server.server.clone();
            meta.cert_sha256 = server.fingerprint_hex();
            eprintln!("Resuming the registration of {}.", meta.username);
            meta
        }
        None => ProfileMeta {
            username: args.username.clone(),
            server: args.server.server.clone(),
            cert_sha256: server.fingerprint_hex(),
            confirmed: false,
            enrolled: false,
        },
    };
    let fresh = profile.load()?.is_none();
    let password = ask_password(&meta.username, fresh)?;
    let addr = meta.server.clone();
    let mut recovery_codes = Vec::new();
    if fresh {
        let registration = bounded(ctx, &addr, async {
            let registered = if args.bot {
                microbot_client::register_bot(&server, &meta.username, &password).await
            } else {
                microbot_client::register(&server, &meta.username, &password).await
            };
            registered.map_err(|e| error::auth(&addr, &meta.username, e))
        })
        .await?;
        profile.save(&meta)?;
        show_enrolment(&registration.otpauth_uri, &registration.totp_secret_base32)?;
        recovery_codes = registration.recovery_codes;
    }
    if !meta.confirmed {
        let confirmed = with_codes("Code from your authenticator: ", |code| {
            let (server, username, password, addr) = (&server, &meta.username, &password, &addr);
            async move {
                bounded(ctx, addr, async {
                    confirm_registration(server, username, password, &code)
                        .await
                        .map_err(|e| error::auth(addr, username, e))
                })
                .await
            }
        })
        .await;
        if let Err(error) = confirmed {
            if !recovery_codes.is_empty() {
                show_recovery_codes(&recovery_codes);
                println!(
                    "The account is not active yet: run `microbot register {}` again to enter a code.",
                    meta.username
                );
            }
            return Err(error);
        }
        meta.confirmed = true;
        profile.save(&meta)?;
        println!("Account {} confirmed.", meta.username);
        if !recovery_codes.is_empty() {
            show_recovery_codes(&recovery_codes);
        }
    }
    eprintln!("To enrol this device, wait until your authenticator shows the next code.");
    enrol_device(
        ctx,
        &mut meta,
        &server,
        &password,
        CodeKind::NextTotp,
        None,
        &args.device_name,
    )
    .await
}

fn show_enrolment(uri: &str, secret: &str) -> Result<(), CliError> {
    println!("Scan this QR code with your authenticator app (TOTP, 6 digits, 30 s):");
    println!("{}", qr::render(uri.as_bytes())?);
    println!("otpauth URI: {uri}");
    println!("secret: {secret}");
    Ok(())
}

fn show_recovery_codes(codes: &[Zeroizing<String>]) {
    println!("Recovery codes (each works once if you lose your authenticator; shown only now):");
    for code in codes {
        println!("  {}", code.as_str());
    }
}

/// `microbot login USERNAME --server ADDR --cert-sha256 HEX`.
pub async fn login(ctx: &Ctx, args: Login) -> Result<(), CliError> {
    let profile = &ctx.profile;
    if profile.load()?.is_some_and(|m| m.enrolled) {
        return Err(CliError::ProfileExists(profile.name().into()));
    }
    let server = profile::server_config(&args.server.server, &args.server.cert_sha256)?;
    eprintln!(
        "This device gets a new identity key: your contacts will be told your safety \
         number changed (use `microbot link` to give this device the account's identity \
         from an existing device instead)."
    );
    let mut meta = ProfileMeta {
        username: args.username.clone(),
        server: args.server.server.clone(),
        cert_sha256: server.fingerprint_hex(),
        confirmed: true,
        enrolled: false,
    };
    let password = ask_password(&meta.username, false)?;
    profile.save(&meta)?;
    enrol_device(
        ctx,
        &mut meta,
        &server,
        &password,
        if args.recovery_code {
            CodeKind::Recovery
        } else {
            CodeKind::Totp
        },
        None,
        &args.device_name,
    )
    .await
}

/// `microbot link --server ADDR --cert-sha256 HEX` (SPEC.md §12.14): opens
/// a provisioning slot, shows the code, waits for an existing device to
/// send the account, then enrols this device with password + code.
pub async fn link(ctx: &Ctx, args: Link) -> Result<(), CliError> {
    let profile = &ctx.profile;
    // A profile left by a failed enrolment may be linked again.
    if profile.load()?.is_some_and(|m| m.enrolled) {
        return Err(CliError::ProfileExists(profile.name().into()));
    }
    let server = profile::server_config(&args.server.server, &args.server.cert_sha256)?;
    let addr = args.server.server.clone();
    let request = bounded(ctx, &addr, async {
        LinkRequest::create(&server)
            .await
            .map_err(|e| error::link(&addr, e))
    })
    .await?;
    let code = request.code().to_text();
    println!("On a device already logged in to the account, scan this QR code or run:");
    println!("  microbot devices link {code}");
    println!("{}", qr::render(code.as_bytes())?);
    println!("code: {code}");
    println!("Waiting for the account (up to {} s)...", args.wait);
    let provisioned = request
        .wait(Duration::from_secs(args.wait))
        .await
        .map_err(|e| error::link(&addr, e))?;
    println!(
        "Received account {} ({} contacts, {} history messages). Enrol this device:",
        provisioned.username,
        provisioned.contacts.len(),
        provisioned.history_len()
    );
    let mut meta = ProfileMeta {
        username: provisioned.username.clone(),
        server: args.server.server.clone(),
        cert_sha256: server.fingerprint_hex(),
        confirmed: true,
        enrolled: false,
    };
    let password = ask_password(&meta.username, false)?;
    profile.save(&meta)?;
    let kind = if args.recovery_code {
        CodeKind::Recovery
    } else {
        CodeKind::Totp
    };
    let enrolled = enrol_device(
        ctx,
        &mut meta,
        &server,
        &password,
        kind,
        Some(&provisioned),
        &args.device_name,
    )
    .await;
    if enrolled.is_err() && !meta.enrolled {
        profile.remove_unused_store();
    }
    enrolled
}
