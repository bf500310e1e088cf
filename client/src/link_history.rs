//! The recent history an existing device may give a device it links
//! (SPEC.md §12.14, `ProvisionMessage.history`): only when its user agreed,
//! at most [`MAX_PROVISIONED_HISTORY`] messages and [`HISTORY_BUDGET`]
//! bytes, so the sealed message stays within the slot's cap. The new device
//! checks every content like a received one (§11.2) and stores it as if it
//! had received it, already shown. Not owned here: sealing and the slot
//! (linking.rs).

use microbot_protocol::content::{Content, HistoryMessage, history_message};
use prost::Message as _;

use crate::error::StoreError;
use crate::events::Conversation;
use crate::groups::GroupId;
use crate::messages;
use crate::store::Tx;

/// Most messages (texts, files, edits, deletes) one provisioning message carries.
pub const MAX_PROVISIONED_HISTORY: usize = 1000;
/// Most encoded bytes of history one provisioning message carries.
///
/// With the caps on contacts and groups this keeps the whole sealed message
/// below the slot's 256 KiB (SPEC.md §12.14).
pub const HISTORY_BUDGET: usize = 64 * 1024;

fn wire_conversation(conversation: &Conversation) -> history_message::Conversation {
    match conversation {
        Conversation::Direct(username) => history_message::Conversation::Username(username.clone()),
        Conversation::Group(id) => {
            history_message::Conversation::GroupId(bytes::Bytes::copy_from_slice(id.as_bytes()))
        }
    }
}

/// The newest `per_conversation` messages of every conversation with a
/// contact or an active group, each with its edits and deletes, oldest
/// first, within the caps.
pub(crate) fn collect(
    tx: &Tx<'_>,
    per_conversation: u32,
) -> Result<Vec<HistoryMessage>, StoreError> {
    let mut conversations: Vec<Conversation> = tx
        .contacts()?
        .into_iter()
        .map(|(name, _)| Conversation::Direct(name))
        .collect();
    conversations.extend(
        tx.groups()?
            .into_iter()
            .filter(|(_, record)| record.active)
            .map(|(id, _)| Conversation::Group(id)),
    );
    let mut out = Vec::new();
    let mut size = 0usize;
    'all: for conversation in conversations {
        for head in tx.history(&conversation.key(), per_conversation)? {
            for row in tx.message_events(&head.author, &head.message_id)? {
                let Ok(content) = Content::decode(row.content.as_slice()) else {
                    continue;
                };
                let message = HistoryMessage {
                    conversation: Some(wire_conversation(&conversation)),
                    author: row.author.clone(),
                    content: Some(content),
                };
                size = size.saturating_add(message.encoded_len());
                if out.len() >= MAX_PROVISIONED_HISTORY || size > HISTORY_BUDGET {
                    break 'all;
                }
                out.push(message);
            }
        }
    }
    Ok(out)
}

/// Checks received history: every entry names a conversation and an
/// author and carries valid content.
pub(crate) fn check(
    history: Vec<HistoryMessage>,
) -> Result<Vec<(Conversation, String, Content)>, &'static str> {
    if history.len() > MAX_PROVISIONED_HISTORY {
        return Err("too many history messages");
    }
    history
        .into_iter()
        .map(|message| {
            let conversation = match message.conversation {
                Some(history_message::Conversation::Username(name))
                    if crate::auth::valid_username(&name) =>
                {
                    Conversation::Direct(name)
                }
                Some(history_message::Conversation::GroupId(id)) => Conversation::Group(
                    GroupId::from_slice(&id).ok_or("history group id must be 16 bytes")?,
                ),
                _ => return Err("history message without a valid conversation"),
            };
            if !crate::auth::valid_username(&message.author) {
                return Err("history message with an invalid author");
            }
            let content = message.content.ok_or("history message without content")?;
            content
                .validate()
                .map_err(|_| "history message with invalid content")?;
            Ok((conversation, message.author, content))
        })
        .collect()
}

/// Stores checked history as received (and shown) messages.
pub(crate) fn import(
    tx: &Tx<'_>,
    history: &[(Conversation, String, Content)],
) -> Result<(), StoreError> {
    for (conversation, author, content) in history {
        if let Some(id) = content.id() {
            tx.insert_message(&messages::row_for(conversation, author, content, id))?;
        }
    }
    Ok(())
}
