//! `devices`: the account's devices, removing one (password + TOTP
//! code, SPEC.md §13), and linking a new one (§12.14).

use crate::cli::{Devices, DevicesCommand};
use crate::error::{self, CliError};
use crate::prompt;
use crate::session::Ctx;

/// `microbot devices [list | remove ID | link CODE [--history N]]`.
pub async fn devices(ctx: &Ctx, args: Devices) -> Result<(), CliError> {
    let online = ctx.online().await?;
    let result = match args.action.unwrap_or(DevicesCommand::List) {
        DevicesCommand::List => list(&online).await,
        DevicesCommand::Remove { id } => remove(&online, id).await,
        DevicesCommand::Link { code, history } => link(&online, &code, history).await,
    };
    online.close().await;
    result
}

async fn list(online: &crate::session::Online) -> Result<(), CliError> {
    let devices = online
        .account
        .list_devices()
        .await
        .map_err(|e| error::online(&online.server, e))?;
    let this = online.account.device_id();
    println!("ID\tNAME\tENROLLED\tLAST LOGIN");
    for device in devices {
        println!(
            "{}\t{}\t{}\t{}{}",
            device.device_id,
            device.name,
            utc(device.created_at_ms),
            utc(device.last_login_ms),
            if device.device_id == this {
                "\t(this device)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn remove(online: &crate::session::Online, id: u64) -> Result<(), CliError> {
    let account = &online.account;
    let password = prompt::password(&format!("Password for {}: ", account.username()))?;
    let code = tokio::task::block_in_place(|| prompt::code("Code from your authenticator: "))?
        .ok_or_else(|| CliError::Input("no code given".into()))?;
    account
        .remove_device(id, &password, &code)
        .await
        .map_err(|e| error::online(&online.server, e))?;
    println!("Removed device {id}.");
    Ok(())
}

/// Seals this account to the new device showing `code` (SPEC.md §12.14).
async fn link(
    online: &crate::session::Online,
    code: &str,
    history: Option<u32>,
) -> Result<(), CliError> {
    let account = &online.account;
    match history {
        Some(per_conversation) => {
            account
                .link_device_with_history(code, per_conversation)
                .await
        }
        None => account.link_device(code).await,
    }
    .map_err(|e| error::link(&online.server, e))?;
    println!("Sent the account to the new device; it now asks for the password and a code.");
    Ok(())
}

/// Milliseconds since 1970 as `YYYY-MM-DD HH:MM UTC` (`-` for 0).
fn utc(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(1), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_000_000_000), "2026-11-18 11:06 UTC");
    }
}
