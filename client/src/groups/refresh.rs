//! Bringing one group up to date from the server (SPEC.md §12.10): fetch
//! it, apply the server's state to the record (events included), and mark
//! a group the server says we are not in as left. Used on connect, on a
//! message from an unknown member, before a group send and by the
//! account's group operations. Not owned here: applying state (state.rs).

use microbot_protocol::transport::{ErrorCode, GetGroupRequest, client_frame::Request, response};

use super::{GroupId, GroupRecord, GroupUpdate, state};
use crate::account_state::Local;
use crate::error::{Interrupted, OnlineError, StoreError, TransportError};
use crate::events::Event;
use crate::transport::Connection;

/// Fetches the group from the server and applies it (events included).
/// Returns the record after it; a group the server says we are not in is
/// marked inactive.
pub(crate) async fn refresh(
    local: Local<'_>,
    conn: &Connection,
    id: GroupId,
) -> Result<Option<GroupRecord>, OnlineError> {
    let reply = conn
        .request(Request::GetGroup(GetGroupRequest {
            group_id: id.to_bytes(),
        }))
        .await;
    let events = match reply {
        Ok(response::Result::Group(info)) => local
            .store
            .tx(|tx| state::apply_info(local.me, tx, &info))?,
        Ok(_) => {
            return Err(TransportError::UnexpectedResponse { expected: "Group" }.into());
        }
        Err(TransportError::Server(error))
            if matches!(
                error.code,
                ErrorCode::NotGroupMember | ErrorCode::UnknownGroup
            ) =>
        {
            local.store.tx(|tx| -> Result<Vec<Event>, StoreError> {
                let Some(mut record) = tx.group(&id)? else {
                    return Ok(Vec::new());
                };
                if !record.active {
                    return Ok(Vec::new());
                }
                let me = local.me.username.clone();
                record.active = false;
                record.members.retain(|m| m.username != me);
                tx.set_group(&id, &record)?;
                tx.delete_outbound_key(&id)?;
                Ok(vec![Event::GroupChanged {
                    group_id: id,
                    version: record.version,
                    update: GroupUpdate::MembersRemoved {
                        usernames: vec![me],
                    },
                }])
            })?
        }
        Err(error) => return Err(error.into()),
    };
    for event in events {
        local.events.emit(event);
    }
    Ok(local.store.tx(|tx| tx.group(&id))?)
}

/// [`refresh`], where only a failed connection or store matters: any
/// other failure (the server refused, an unexpected answer) is logged and
/// the group stays as it was.
pub(crate) async fn refresh_or_log(
    local: Local<'_>,
    conn: &Connection,
    id: GroupId,
) -> Result<(), Interrupted> {
    match refresh(local, conn, id).await {
        Ok(_) => Ok(()),
        Err(OnlineError::Transport(error)) if error.is_connection_problem() => Err(error.into()),
        Err(OnlineError::Store(error)) => Err(error.into()),
        Err(error) => {
            tracing::warn!(group = %id, %error, "group refresh failed");
            Ok(())
        }
    }
}
