//! Naming a conversation on the command line: a username (`bob`, or
//! `@bob` to insist), or a group by name or id (`#team` to insist).
//! Not owned here: the conversations themselves (the SDK).

use microbot_client::{Account, Conversation};

use crate::error::CliError;
use crate::render::Names;

/// A resolved target: the conversation and how to show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The conversation.
    pub conversation: Conversation,
    /// Its label (`bob`, `#team`).
    pub label: String,
}

/// Whether `name` is a valid username (3 to 32 of `a-z 0-9 _ . -`).
pub fn valid_username(name: &str) -> bool {
    microbot_client::auth::valid_username(name)
}

/// Resolves `text` for `account`.
pub fn resolve(account: &Account, text: &str) -> Result<Target, CliError> {
    let names = group_names(account)?;
    resolve_with(&names, text)
}

/// Group names known to `account` (groups left included, for history).
pub fn group_names(account: &Account) -> Result<Names, CliError> {
    let groups = account.groups().map_err(crate::error::store)?;
    let mut bots = Vec::new();
    for (contact, _) in account.contacts().map_err(crate::error::store)? {
        if account.is_bot(&contact).map_err(crate::error::store)? {
            bots.push(contact);
        }
    }
    Ok(Names::from_groups(groups).with_bots(bots))
}

fn resolve_with(names: &Names, text: &str) -> Result<Target, CliError> {
    if let Some(group) = text.strip_prefix('#') {
        return names
            .find_group(group)?
            .map(|id| Target {
                conversation: Conversation::Group(id),
                label: names.label(&Conversation::Group(id)),
            })
            .ok_or_else(|| CliError::UnknownGroup(group.to_owned()));
    }
    let forced_user = text.strip_prefix('@');
    let name = forced_user.unwrap_or(text);
    if forced_user.is_none()
        && let Some(id) = names.find_group(name)?
    {
        return Ok(Target {
            conversation: Conversation::Group(id),
            label: names.label(&Conversation::Group(id)),
        });
    }
    if !valid_username(name) {
        return Err(CliError::UnknownContact(format!(
            "{name} (not a username, nor a group you are in)"
        )));
    }
    Ok(Target {
        conversation: Conversation::Direct(name.to_owned()),
        label: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_win_by_name_and_prefixes_insist() {
        let team = microbot_client::GroupId::from_bytes([9u8; 16]);
        let names = Names::new([(team, "team".to_owned())]);
        let group = Conversation::Group(team);
        assert_eq!(resolve_with(&names, "team").unwrap().conversation, group);
        assert_eq!(resolve_with(&names, "#team").unwrap().conversation, group);
        assert_eq!(resolve_with(&names, "#team").unwrap().label, "#team");
        assert_eq!(
            resolve_with(&names, &format!("#{}", "09".repeat(16)))
                .unwrap()
                .conversation,
            group
        );
        assert_eq!(
            resolve_with(&names, "@team").unwrap().conversation,
            Conversation::Direct("team".into())
        );
        assert_eq!(
            resolve_with(&names, "bob").unwrap().conversation,
            Conversation::Direct("bob".into())
        );
        assert!(matches!(
            resolve_with(&names, "#nope"),
            Err(CliError::UnknownGroup(_))
        ));
        assert!(matches!(
            resolve_with(&names, "Bad Name"),
            Err(CliError::UnknownContact(_))
        ));
    }
}
