//! The account's group operations (SPEC.md §12.10): the public methods,
//! each handing over to `groups::admin::GroupAdmin`, which holds the logic.

use crate::account::Account;
use crate::error::{GroupError, StoreError};
use crate::groups::admin::GroupAdmin;
use crate::groups::{GroupId, GroupInfo, GroupRole};

impl Account {
    /// Creates a group named `name` with us (admin) and `members`, and
    /// announces it to them. Needs the connection.
    ///
    /// # Errors
    /// [`GroupError`]; `Transport` with `UNKNOWN_ACCOUNT` when a member does
    /// not exist.
    pub async fn create_group(&self, name: &str, members: &[&str]) -> Result<GroupId, GroupError> {
        GroupAdmin { inner: &self.inner }
            .create_group(name, members)
            .await
    }

    /// Adds members (admins only) and gives them the group's name and
    /// metadata key. Members already in the group are skipped.
    ///
    /// # Errors
    /// [`GroupError`]; `Conflict` when concurrent changes kept winning.
    pub async fn add_group_members(
        &self,
        id: &GroupId,
        usernames: &[&str],
    ) -> Result<GroupInfo, GroupError> {
        GroupAdmin { inner: &self.inner }
            .add_group_members(id, usernames)
            .await
    }

    /// Removes members (admins only), then re-keys the group's metadata so
    /// the removed cannot read later names. Our sender key rotates before
    /// our next group message, so they cannot read it either.
    ///
    /// # Errors
    /// [`GroupError`].
    pub async fn remove_group_members(
        &self,
        id: &GroupId,
        usernames: &[&str],
    ) -> Result<GroupInfo, GroupError> {
        GroupAdmin { inner: &self.inner }
            .remove_group_members(id, usernames)
            .await
    }

    /// Renames the group (admins only): the name is sealed for the server
    /// under a fresh metadata key and announced to the members.
    ///
    /// # Errors
    /// [`GroupError`].
    pub async fn rename_group(&self, id: &GroupId, name: &str) -> Result<GroupInfo, GroupError> {
        GroupAdmin { inner: &self.inner }
            .rename_group(id, name)
            .await
    }

    /// Gives `username` the role `role` (admins only).
    ///
    /// # Errors
    /// [`GroupError`].
    pub async fn set_group_role(
        &self,
        id: &GroupId,
        username: &str,
        role: GroupRole,
    ) -> Result<GroupInfo, GroupError> {
        GroupAdmin { inner: &self.inner }
            .set_group_role(id, username, role)
            .await
    }

    /// Leaves the group: announces it to the members through the outbox
    /// (after our earlier group sends; waits up to 30 s for it to leave),
    /// then leaves on the server and forgets the group's keys. The history
    /// stays.
    ///
    /// # Errors
    /// [`GroupError`].
    pub async fn leave_group(&self, id: &GroupId) -> Result<(), GroupError> {
        GroupAdmin { inner: &self.inner }.leave_group(id).await
    }

    /// Fetches the group's current state from the server (events for what
    /// changed are raised as usual).
    ///
    /// # Errors
    /// [`GroupError`].
    pub async fn refresh_group(&self, id: &GroupId) -> Result<Option<GroupInfo>, GroupError> {
        GroupAdmin { inner: &self.inner }.refresh_group(id).await
    }

    /// Every group this device knows, including those we left (`active` false).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn groups(&self) -> Result<Vec<GroupInfo>, StoreError> {
        GroupAdmin { inner: &self.inner }.groups()
    }

    /// One group, if known.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn group(&self, id: &GroupId) -> Result<Option<GroupInfo>, StoreError> {
        GroupAdmin { inner: &self.inner }.group(id)
    }
}
