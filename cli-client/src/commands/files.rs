//! `file send` and `file get`: files through the SDK's streaming,
//! end-to-end encrypted attachments (SPEC.md §7, §12.11), with a progress
//! bar on a terminal (for a send: the encryption into the queue).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use microbot_client::FileOptions;

use crate::cli::FileCommand;
use crate::error::{self, CliError};
use crate::progress::{self, Progress};
use crate::session::{Ctx, Online, id_hex, parse_id, queued};
use crate::target;

/// `microbot file ...`.
pub async fn file(ctx: &Ctx, command: FileCommand) -> Result<(), CliError> {
    match command {
        FileCommand::Send {
            target,
            path,
            caption,
        } => send(ctx, &target, &path, caption).await,
        FileCommand::Get {
            message_id,
            dest,
            force,
        } => get(ctx, &message_id, &dest, force).await,
    }
}

/// A progress callback for the SDK around a [`Progress`] bar.
fn reporter(bar: &Mutex<Progress>) -> impl Fn(microbot_client::Progress) + Send + Sync + '_ {
    move |p: microbot_client::Progress| {
        bar.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .update(p.done_bytes, p.total_bytes);
    }
}

/// The upload speed `file send` counts on when it waits for the server
/// to store the file (a slower upload stays queued: see below).
const ASSUMED_UPLOAD_BYTES_PER_SEC: u64 = 1024 * 1024;

/// `file send`: the file is encrypted into the account's store and queued
/// first, like the SDK does, without waiting for the connection; then the
/// command connects and waits until the server stored it (upload, then
/// message). When the server cannot be reached or the upload takes
/// longer, the file stays queued and leaves with the next command that
/// connects, and the error says so.
async fn send(ctx: &Ctx, target: &str, path: &Path, caption: String) -> Result<(), CliError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(CliError::Input(format!("{} is not a file", path.display())));
    }
    let opened = ctx.open()?;
    let target = target::resolve(&opened.account, target)?;
    let bar = Mutex::new(Progress::new(format!("encrypting {}", path.display())));
    let options = FileOptions {
        caption,
        ..FileOptions::default()
    };
    let staged = opened
        .account
        .send_attachment(&target.conversation, path, options, reporter(&bar))
        .await;
    bar.lock().unwrap_or_else(PoisonError::into_inner).finish();
    let id = staged.map_err(|e| error::attachment(&opened.meta.server, &target.label, e))?;
    let mut online = Online::connect(opened, ctx.connect_timeout)
        .await
        .map_err(queued)?;
    let upload = Duration::from_secs(meta.len() / ASSUMED_UPLOAD_BYTES_PER_SEC);
    let result = online
        .inbox
        .wait_sent(&[id], &target.label, ctx.connect_timeout + upload)
        .await;
    online.close().await;
    result?;
    println!("{}", id_hex(&id));
    Ok(())
}

/// The file name a sender suggested, made safe to use in a directory:
/// its last path component, without control characters; `None` when
/// nothing usable is left.
fn safe_file_name(suggested: &str) -> Option<String> {
    let last = suggested
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>();
    let trimmed = last.trim();
    (!trimmed.is_empty() && trimmed != "." && trimmed != "..").then(|| trimmed.to_owned())
}

/// Refuses to replace an existing file at `dest` unless `force`. (The
/// download is renamed into place only once complete, so a refused or
/// failed download never touches it.)
fn check_overwrite(dest: &Path, force: bool) -> Result<(), CliError> {
    match std::fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => Err(CliError::Input(format!(
            "{} is a directory inside the destination; choose another DEST",
            dest.display()
        ))),
        Ok(_) if !force => Err(CliError::Input(format!(
            "{} exists; choose another DEST, or pass --force to replace it",
            dest.display()
        ))),
        _ => Ok(()),
    }
}

async fn get(ctx: &Ctx, message_id: &str, dest: &Path, force: bool) -> Result<(), CliError> {
    let id = parse_id(message_id)?;
    let mut online = ctx.online().await?;
    let result = async {
        let pointer = online
            .account
            .attachment(&id)
            .map_err(error::store)?
            .ok_or_else(|| {
                CliError::UnknownMessage(format!(
                    "{message_id} (no file message with this id has reached this device)"
                ))
            })?;
        let dest: PathBuf = if dest.is_dir() {
            dest.join(safe_file_name(&pointer.file_name).unwrap_or_else(|| "download".into()))
        } else {
            dest.to_owned()
        };
        check_overwrite(&dest, force)?;
        let bar = Mutex::new(Progress::new(format!("receiving {}", dest.display())));
        let got = online
            .account
            .download_pointer(&pointer, &dest, reporter(&bar))
            .await;
        bar.lock().unwrap_or_else(PoisonError::into_inner).finish();
        let size = got.map_err(|e| error::attachment(&online.server, message_id, e))?;
        Ok::<_, CliError>((dest, size))
    }
    .await;
    // Delivery receipts queued meanwhile may leave now.
    let _ = online.drain_outbox(std::time::Duration::from_secs(2)).await;
    online.close().await;
    let (dest, size) = result?;
    println!("{}", dest.display());
    eprintln!(
        "Saved {} to {}.",
        progress::bytes(size as f64),
        dest.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::safe_file_name;

    #[test]
    fn suggested_names_cannot_leave_the_directory() {
        assert_eq!(safe_file_name("report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(
            safe_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(safe_file_name("a\\b\\c.txt").as_deref(), Some("c.txt"));
        assert_eq!(safe_file_name("bad\nname").as_deref(), Some("badname"));
        for unusable in ["", "..", ".", "dir/", " "] {
            assert_eq!(safe_file_name(unusable), None, "{unusable:?}");
        }
    }
}
