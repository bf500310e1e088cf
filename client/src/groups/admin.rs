//! The account's group operations (SPEC.md §12.10, §11.5): create, add,
//! remove, set a role, rename, leave, list.
//!
//! Each change is a version-checked request; when the server refuses it as
//! stale (`STALE_GROUP_VERSION`, a concurrent change by another admin won),
//! the group is fetched again, the intent re-applied to the new state (e.g.
//! members already added are not added twice) and the request retried, at
//! most [`MAX_CHANGE_ATTEMPTS`] times. After the server accepted a change,
//! the record is updated from its answer and the change is announced to the
//! members as a `GroupChange` through the outbox, in order with the group's
//! other messages. Every metadata change (rename, and the re-keying that
//! follows a removal) seals the name under a fresh metadata key, which only
//! the current members receive. Not owned here: sender keys (send.rs),
//! applying state (state.rs).

use microbot_protocol::content::{self, GroupChange, GroupChangeKind};
use microbot_protocol::transport::{
    CreateGroupRequest, ErrorCode, LeaveGroupRequest, SetGroupMetadataRequest,
    client_frame::Request, response,
};
use std::time::Duration;

use super::change_plan::{self, announcement, check_name, checked_usernames};
use super::refresh::refresh;
use super::{
    GROUP_RECORD_VERSION, GroupId, GroupInfo, GroupRecord, GroupRole, GroupUpdate, MemberRecord,
    new_metadata_key, seal_metadata, state,
};
use crate::account_state::Inner;
use crate::auth::valid_username;
use crate::error::{GroupError, StoreError, TransportError};
use crate::events::{Conversation, Event};
use crate::messages::new_id;
use crate::now_ms;
use crate::outbox::QueuedBy;
use crate::transport::Connection;

/// Attempts of one change before giving up on concurrent changes.
pub const MAX_CHANGE_ATTEMPTS: u32 = 5;
/// Longest wait for our `LEFT` announcement to leave before leaving anyway.
const LEAVE_ANNOUNCE_WAIT: Duration = Duration::from_secs(30);

/// The account's group operations, over the state they need.
pub(crate) struct GroupAdmin<'a> {
    /// The account's shared state.
    pub(crate) inner: &'a Inner,
}

impl GroupAdmin<'_> {
    fn online(&self) -> Result<std::sync::Arc<Connection>, GroupError> {
        self.inner.online.get().ok_or(GroupError::NotConnected)
    }

    fn active_group(&self, id: &GroupId) -> Result<GroupRecord, GroupError> {
        let record = self
            .inner
            .store
            .tx(|tx| tx.group(id))?
            .ok_or(GroupError::UnknownGroup)?;
        if !record.active {
            return Err(GroupError::NotMember);
        }
        Ok(record)
    }

    fn announce(&self, id: GroupId, change: GroupChange) -> Result<(), GroupError> {
        let content = content::Content::group_change(new_id(), now_ms(), change);
        crate::outbox::queue(self.inner, &Conversation::Group(id), content, QueuedBy::Sdk)?;
        Ok(())
    }

    /// Runs one version-checked change, retrying on stale versions with the
    /// intent re-applied to the refetched group. `make` returns `None` when
    /// nothing is left to do. Returns the new server state, if a change was made.
    async fn change(
        &self,
        id: GroupId,
        mut make: impl FnMut(&GroupRecord) -> Option<Request>,
    ) -> Result<Option<GroupRecord>, GroupError> {
        let conn = self.online()?;
        for _ in 0..MAX_CHANGE_ATTEMPTS {
            let record = self.active_group(&id)?;
            let Some(request) = make(&record) else {
                return Ok(None);
            };
            match conn.request(request).await {
                Ok(response::Result::Group(info)) => {
                    let events = self
                        .inner
                        .store
                        .tx(|tx| state::apply_info(&self.inner.me, tx, &info))?;
                    for event in events {
                        self.inner.events.emit(event);
                    }
                    return Ok(Some(self.active_group(&id)?));
                }
                Ok(_) => {
                    return Err(TransportError::UnexpectedResponse { expected: "Group" }.into());
                }
                Err(TransportError::Server(error))
                    if error.code == ErrorCode::StaleGroupVersion =>
                {
                    tracing::debug!(group = %id, "stale group version; refetching");
                    refresh(self.inner.local(), &conn, id).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(GroupError::Conflict {
            attempts: MAX_CHANGE_ATTEMPTS,
        })
    }

    /// Creates a group named `name` with us (admin) and `members`, and
    /// announces it to them. Needs the connection.
    ///
    /// # Errors
    /// [`GroupError`]; `Transport` with `UNKNOWN_ACCOUNT` when a member does
    /// not exist.
    pub(crate) async fn create_group(
        &self,
        name: &str,
        members: &[&str],
    ) -> Result<GroupId, GroupError> {
        check_name(name)?;
        let members = checked_usernames(&self.inner.me.username, members)?;
        let conn = self.online()?;
        let id = GroupId::random();
        let key = new_metadata_key();
        let metadata = content::GroupMetadata {
            name: name.to_owned(),
            ..content::GroupMetadata::default()
        };
        let blob = seal_metadata(&key, id, &metadata);
        let info = match conn
            .request(Request::CreateGroup(CreateGroupRequest {
                group_id: id.to_bytes(),
                members: members.clone(),
                encrypted_metadata: blob.clone().into(),
            }))
            .await?
        {
            response::Result::Group(info) => info,
            _ => return Err(TransportError::UnexpectedResponse { expected: "Group" }.into()),
        };
        let record = GroupRecord {
            format: GROUP_RECORD_VERSION,
            version: info.version,
            active: true,
            members: info
                .members
                .iter()
                .map(|m| MemberRecord {
                    username: m.username.clone(),
                    role: m.role,
                    joined_at_version: m.joined_at_version,
                })
                .collect(),
            name: name.to_owned(),
            description: String::new(),
            metadata_key: key.to_vec(),
            encrypted_metadata: blob,
            checked_ms: now_ms(),
            leaving: Vec::new(),
            pending_key: Vec::new(),
            pending_created_by: String::new(),
        };
        self.inner.store.tx(|tx| tx.set_group(&id, &record))?;
        self.inner.events.emit(Event::GroupChanged {
            group_id: id,
            version: info.version,
            update: GroupUpdate::Created {
                by: self.inner.me.username.clone(),
                name: name.to_owned(),
            },
        });
        let mut change = announcement(id, info.version, GroupChangeKind::Created);
        change.usernames = members;
        change.metadata = Some(metadata);
        change.metadata_key = key.to_vec().into();
        self.announce(id, change)?;
        Ok(id)
    }

    /// Adds members (admins only) and gives them the group's name and
    /// metadata key. Members already in the group are skipped.
    ///
    /// # Errors
    /// [`GroupError`]; `Conflict` when concurrent changes kept winning.
    pub(crate) async fn add_group_members(
        &self,
        id: &GroupId,
        usernames: &[&str],
    ) -> Result<GroupInfo, GroupError> {
        let wanted = checked_usernames(&self.inner.me.username, usernames)?;
        let mut added = Vec::new();
        let changed = self
            .change(*id, |record| {
                let (request, names) = change_plan::add_members(*id, record, &wanted)?;
                added = names;
                Some(request)
            })
            .await?;
        if let Some(record) = &changed {
            self.announce(*id, change_plan::members_added(*id, record, added))?;
        }
        Ok(self.active_group(id)?.public(*id))
    }

    /// Removes members (admins only), then re-keys the group's metadata so
    /// the removed cannot read later names. Our sender key rotates before
    /// our next group message, so they cannot read it either.
    ///
    /// # Errors
    /// [`GroupError`].
    pub(crate) async fn remove_group_members(
        &self,
        id: &GroupId,
        usernames: &[&str],
    ) -> Result<GroupInfo, GroupError> {
        let wanted = checked_usernames(&self.inner.me.username, usernames)?;
        let mut removed = Vec::new();
        let changed = self
            .change(*id, |record| {
                let (request, names) = change_plan::remove_members(*id, record, &wanted)?;
                removed = names;
                Some(request)
            })
            .await?;
        if let Some(record) = changed {
            let mut change = announcement(*id, record.version, GroupChangeKind::MembersRemoved);
            change.usernames = removed;
            self.announce(*id, change)?;
            let name = record.name.clone();
            self.set_metadata(id, &name).await?;
        }
        Ok(self.active_group(id)?.public(*id))
    }

    /// Renames the group (admins only): the name is sealed for the server
    /// under a fresh metadata key and announced to the members.
    ///
    /// # Errors
    /// [`GroupError`].
    pub(crate) async fn rename_group(
        &self,
        id: &GroupId,
        name: &str,
    ) -> Result<GroupInfo, GroupError> {
        check_name(name)?;
        self.set_metadata(id, name).await?;
        Ok(self.active_group(id)?.public(*id))
    }

    async fn set_metadata(&self, id: &GroupId, name: &str) -> Result<(), GroupError> {
        let key = new_metadata_key();
        let mut metadata = None;
        let changed = self
            .change(*id, |record| {
                let mut m = record.metadata();
                m.name = name.to_owned();
                let blob = seal_metadata(&key, *id, &m);
                metadata = Some(m);
                Some(Request::SetGroupMetadata(SetGroupMetadataRequest {
                    group_id: id.to_bytes(),
                    expected_version: record.version,
                    encrypted_metadata: blob.into(),
                }))
            })
            .await;
        let Some(record) = changed? else {
            return Ok(());
        };
        // The answer was applied with the old key (the new blob did not
        // open); store the new key and name now.
        let events = self
            .inner
            .store
            .tx(|tx| -> Result<Vec<Event>, StoreError> {
                let Some(mut stored) = tx.group(id)? else {
                    return Ok(Vec::new());
                };
                stored.metadata_key = key.to_vec();
                let mut events = Vec::new();
                if let Some(m) = &metadata {
                    if m.name != stored.name {
                        events.push(Event::GroupChanged {
                            group_id: *id,
                            version: stored.version,
                            update: GroupUpdate::Renamed {
                                name: m.name.clone(),
                            },
                        });
                    }
                    stored.name = m.name.clone();
                    stored.description = m.description.clone();
                }
                tx.set_group(id, &stored)?;
                Ok(events)
            })?;
        for event in events {
            self.inner.events.emit(event);
        }
        let mut change = announcement(*id, record.version, GroupChangeKind::MetadataChanged);
        change.metadata = metadata;
        change.metadata_key = key.to_vec().into();
        self.announce(*id, change)
    }

    /// Gives `username` the role `role` (admins only).
    ///
    /// # Errors
    /// [`GroupError`].
    pub(crate) async fn set_group_role(
        &self,
        id: &GroupId,
        username: &str,
        role: GroupRole,
    ) -> Result<GroupInfo, GroupError> {
        if !valid_username(username) {
            return Err(GroupError::InvalidInput("invalid username"));
        }
        let changed = self
            .change(*id, |record| {
                change_plan::set_role(*id, record, username, role)
            })
            .await?;
        if let Some(record) = changed {
            let change = change_plan::role_changed(*id, record.version, username, role);
            self.announce(*id, change)?;
        }
        Ok(self.active_group(id)?.public(*id))
    }

    /// Leaves the group: announces it to the members through the outbox
    /// (after our earlier group sends; waits up to 30 s for it to leave),
    /// then leaves on the server and forgets the group's keys. The history
    /// stays.
    ///
    /// # Errors
    /// [`GroupError`].
    pub(crate) async fn leave_group(&self, id: &GroupId) -> Result<(), GroupError> {
        let record = self.active_group(id)?;
        let conn = self.online()?;
        let content = content::Content::group_change(
            new_id(),
            now_ms(),
            announcement(*id, record.version.saturating_add(1), GroupChangeKind::Left),
        );
        let message_id = crate::outbox::queue(
            self.inner,
            &Conversation::Group(*id),
            content,
            QueuedBy::Sdk,
        )?;
        let deadline = tokio::time::Instant::now() + LEAVE_ANNOUNCE_WAIT;
        while self.inner.store.tx(|tx| tx.outbox_contains(&message_id))?
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match conn
            .request(Request::LeaveGroup(LeaveGroupRequest {
                group_id: id.to_bytes(),
            }))
            .await
        {
            Ok(_) => {}
            Err(TransportError::Server(error))
                if matches!(
                    error.code,
                    ErrorCode::NotGroupMember | ErrorCode::UnknownGroup
                ) => {}
            Err(error) => return Err(error.into()),
        }
        let events = self
            .inner
            .store
            .tx(|tx| state::mark_left(&self.inner.me, tx, *id))?;
        for event in events {
            self.inner.events.emit(event);
        }
        Ok(())
    }

    /// Fetches the group's current state from the server (events for what
    /// changed are raised as usual).
    ///
    /// # Errors
    /// [`GroupError`].
    pub(crate) async fn refresh_group(
        &self,
        id: &GroupId,
    ) -> Result<Option<GroupInfo>, GroupError> {
        let conn = self.online()?;
        Ok(refresh(self.inner.local(), &conn, *id)
            .await?
            .map(|record| record.public(*id)))
    }

    /// Every group this device knows, including those we left (`active` false).
    ///
    /// # Errors
    /// [`StoreError`].
    pub(crate) fn groups(&self) -> Result<Vec<GroupInfo>, StoreError> {
        Ok(self
            .inner
            .store
            .tx(|tx| tx.groups())?
            .into_iter()
            .map(|(id, record)| record.public(id))
            .collect())
    }

    /// One group, if known.
    ///
    /// # Errors
    /// [`StoreError`].
    pub(crate) fn group(&self, id: &GroupId) -> Result<Option<GroupInfo>, StoreError> {
        Ok(self
            .inner
            .store
            .tx(|tx| tx.group(id))?
            .map(|r| r.public(*id)))
    }
}
