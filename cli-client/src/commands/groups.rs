//! `group`: create a group, add and remove members, leave, rename, list
//! (SPEC.md §12.10 through the SDK). Each change is announced to the
//! members through the outbox; the command waits until it left.

use microbot_client::{GroupId, GroupInfo, GroupRole};

use crate::cli::GroupCommand;
use crate::error::{self, CliError};
use crate::session::{Ctx, Online};
use crate::target;

/// `microbot group ...`.
pub async fn group(ctx: &Ctx, command: GroupCommand) -> Result<(), CliError> {
    let mut online = ctx.online().await?;
    let result = run(&mut online, command).await;
    let drained = match &result {
        Ok(()) => online.drain_or_warn(ctx.connect_timeout).await,
        Err(_) => Ok(()),
    };
    online.close().await;
    result.and(drained)
}

fn usernames(members: &[String]) -> Result<Vec<&str>, CliError> {
    members
        .iter()
        .map(|m| {
            let name = m.strip_prefix('@').unwrap_or(m);
            if target::valid_username(name) {
                Ok(name)
            } else {
                Err(CliError::UnknownContact(format!("{m} (not a username)")))
            }
        })
        .collect()
}

/// The active group `text` names.
fn find(online: &Online, text: &str) -> Result<GroupId, CliError> {
    let names = target::group_names(&online.account)?;
    let name = text.strip_prefix('#').unwrap_or(text);
    names
        .find_group(name)?
        .ok_or_else(|| CliError::UnknownGroup(name.to_owned()))
}

async fn run(online: &mut Online, command: GroupCommand) -> Result<(), CliError> {
    let account = &online.account;
    let addr = online.server.clone();
    match command {
        GroupCommand::Create { name, members } => {
            let members = usernames(&members)?;
            let id = account
                .create_group(&name, &members)
                .await
                .map_err(|e| error::group(&addr, &name, e))?;
            println!("{id}");
            eprintln!(
                "Created #{name} with {}.",
                members_text(account.username(), &members)
            );
        }
        GroupCommand::Add { group, members } => {
            let id = find(online, &group)?;
            let members = usernames(&members)?;
            let info = account
                .add_group_members(&id, &members)
                .await
                .map_err(|e| error::group(&addr, &group, e))?;
            print_group(&info);
        }
        GroupCommand::Remove { group, members } => {
            let id = find(online, &group)?;
            let members = usernames(&members)?;
            let info = account
                .remove_group_members(&id, &members)
                .await
                .map_err(|e| error::group(&addr, &group, e))?;
            print_group(&info);
        }
        GroupCommand::Leave { group } => {
            let id = find(online, &group)?;
            account
                .leave_group(&id)
                .await
                .map_err(|e| error::group(&addr, &group, e))?;
            eprintln!("You left {group}; its history stays on this device.");
        }
        GroupCommand::Rename { group, name } => {
            let id = find(online, &group)?;
            let info = account
                .rename_group(&id, &name)
                .await
                .map_err(|e| error::group(&addr, &group, e))?;
            print_group(&info);
        }
        GroupCommand::List => {
            let groups = account.groups().map_err(error::store)?;
            if groups.is_empty() {
                eprintln!("No groups yet.");
            }
            for info in groups {
                print_group(&info);
            }
        }
    }
    Ok(())
}

fn members_text(me: &str, members: &[&str]) -> String {
    if members.is_empty() {
        format!("{me} only")
    } else {
        format!("{me}, {}", members.join(", "))
    }
}

/// `ID  #name  member, admin*  (left)`.
fn print_group(info: &GroupInfo) {
    let members: Vec<String> = info
        .members
        .iter()
        .map(|m| match m.role {
            GroupRole::Admin => format!("{}*", m.username),
            GroupRole::Member => m.username.clone(),
        })
        .collect();
    let name = if info.name.is_empty() {
        "(name not known yet)".to_owned()
    } else {
        format!("#{}", info.name)
    };
    println!(
        "{}\t{name}\t{}{}",
        info.id,
        members.join(", "),
        if info.active { "" } else { "\t(left)" }
    );
}
