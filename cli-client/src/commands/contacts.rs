//! `contacts` and `verify`: who we talk to, and the safety numbers to
//! compare with them (SPEC.md §8). Both work offline, from the store.

use crate::cli::Verify;
use crate::error::{self, CliError};
use crate::qr;
use crate::session::Ctx;

/// `microbot contacts`.
pub fn contacts(ctx: &Ctx) -> Result<(), CliError> {
    let opened = ctx.open()?;
    let contacts = opened.account.contacts().map_err(error::store)?;
    if contacts.is_empty() {
        eprintln!("No contacts yet: they appear after the first message in either direction.");
    }
    for (name, changed) in contacts {
        if changed {
            println!("{name}\tsafety number changed: `microbot verify {name}`");
        } else {
            println!("{name}");
        }
    }
    Ok(())
}

/// `microbot verify NAME [--qr] [--accept]`.
pub fn verify(ctx: &Ctx, args: Verify) -> Result<(), CliError> {
    let opened = ctx.open()?;
    let account = &opened.account;
    let name = args.name.strip_prefix('@').unwrap_or(&args.name);
    let pending = account
        .contacts()
        .map_err(error::store)?
        .into_iter()
        .find(|(contact, _)| contact == name)
        .map(|(_, pending)| pending)
        .ok_or_else(|| {
            CliError::UnknownContact(format!("{name} (no message exchanged with them yet)"))
        })?;
    let number = account
        .safety_number(name)
        .map_err(error::store)?
        .ok_or_else(|| CliError::UnknownContact(name.to_owned()))?;
    if args.accept {
        account
            .acknowledge_identity_change(name)
            .map_err(error::acknowledge)?;
        println!(
            "Accepted the new safety number of {name}: {}",
            number.display()
        );
        return Ok(());
    }
    println!("{}", number.display());
    if args.qr {
        let payload = number.qr_payload();
        println!("{}", qr::render(&payload)?);
        println!("QR payload: {}", hex::encode(payload));
    }
    if pending {
        eprintln!(
            "The safety number of {name} changed. Compare it with {name} (in person or on a \
             call), then accept it with `microbot verify {name} --accept`."
        );
    } else {
        eprintln!("Compare these digits with {name}'s `microbot verify`: they must be equal.");
    }
    Ok(())
}
