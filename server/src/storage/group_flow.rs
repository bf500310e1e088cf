//! The group operations of SPEC.md §12.10 as one sequence for both
//! backends: load the rows, ask [`super::group_rules`] for a plan, write
//! it, read the result back and name the devices to notify. A backend
//! implements [`GroupRows`] (rows in, rows out, inside one of its
//! transactions) and runs these functions in that transaction, so a change
//! stays atomic; it decides nothing itself.
//!
//! Not owned here: the rules (group_rules.rs), the SQL
//! (sqlite/groups.rs, postgres/groups.rs), opening and committing the
//! transaction, and the queue writes of a group send (per backend: SQLite
//! checks room device by device on its writer thread, PostgreSQL locks and
//! checks all recipients in one statement).

use std::collections::BTreeSet;

use super::StorageError;
use super::group_rules::{
    Accounts, ChangePlan, CreateFacts, member_ids, named_users, plan_change, plan_create,
    require_member,
};
use super::groups::{
    GROUP_ID_LEN, GroupCaps, GroupChange, GroupChangeOutcome, GroupRecord, GroupRole,
};

/// A group id.
type GroupId = [u8; GROUP_ID_LEN];

/// How [`GroupRows::load_group`] locks the group row, for a backend whose
/// transactions do not already exclude each other (SQLite's IMMEDIATE
/// transactions and writer thread do, and ignore it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupLock {
    /// A plain read.
    None,
    /// Membership cannot change until the transaction ends (a send).
    Share,
    /// No other change until the transaction ends (a change).
    Update,
}

/// The rows of the group tables, read and written inside one open
/// transaction of a backend. Every method is one or a few statements; none
/// decides anything.
///
/// The methods are `async` for PostgreSQL; SQLite's finish without ever
/// waiting (see [`super::sqlite`]'s runner).
pub(crate) trait GroupRows {
    /// The backend's error; a rule's [`StorageError`] converts into it, so
    /// a backend keeps its own (e.g. PostgreSQL's retryable conflicts).
    type Error: From<StorageError>;

    /// The group with its members ordered by join version, then account
    /// id, locked as `lock` says.
    ///
    /// # Errors
    /// [`StorageError::UnknownGroup`] when there is no such group; a
    /// database error.
    async fn load_group(&self, id: &GroupId, lock: GroupLock) -> Result<GroupRecord, Self::Error>;

    /// The active accounts among `names`, by username (a missing name has
    /// no active account).
    ///
    /// # Errors
    /// A database error.
    async fn resolve(&self, names: &[&str]) -> Result<Accounts, Self::Error>;

    /// Live devices of `accounts`, grouped by account ascending, then by
    /// device id ascending.
    ///
    /// # Errors
    /// A database error.
    async fn devices_of(&self, accounts: &BTreeSet<i64>) -> Result<Vec<u64>, Self::Error>;

    /// The devices of `accounts` a group message goes to: for an account
    /// with a signed device list (SPEC.md §20), only the devices it lists.
    ///
    /// # Errors
    /// A database error.
    async fn recipients_of(&self, accounts: &BTreeSet<i64>) -> Result<Vec<u64>, Self::Error>;

    /// Whether group `id` exists and how many existing groups `creator`
    /// created, after taking whatever lock keeps that count true until the
    /// transaction ends.
    ///
    /// # Errors
    /// A database error.
    async fn create_facts(&self, id: &GroupId, creator: i64) -> Result<CreateFacts, Self::Error>;

    /// Inserts the group row at version 1.
    ///
    /// # Errors
    /// [`StorageError::GroupExists`] when another transaction took the id
    /// since [`GroupRows::create_facts`]; a database error.
    async fn insert_group(
        &self,
        id: &GroupId,
        metadata: &[u8],
        now_ms: u64,
        creator: i64,
    ) -> Result<(), Self::Error>;

    /// Inserts one member row.
    ///
    /// # Errors
    /// A database error.
    async fn insert_member(
        &self,
        id: &GroupId,
        account: i64,
        role: GroupRole,
        joined_at_version: u64,
    ) -> Result<(), Self::Error>;

    /// Writes a planned change's rows and the version bump, or deletes the
    /// group when the plan says so.
    ///
    /// # Errors
    /// A database error.
    async fn write_plan(&self, id: &GroupId, plan: &ChangePlan) -> Result<(), Self::Error>;
}

/// Creates group `id` (see [`super::GroupStorage::create_group_capped`]):
/// facts, resolve, plan, insert the group and its members at version 1,
/// read it back; every member's devices are notified.
///
/// # Errors
/// The rules' errors ([`plan_create`]) and the rows'.
pub(crate) async fn create<R: GroupRows>(
    rows: &R,
    id: &GroupId,
    creator: i64,
    members: &[String],
    metadata: &[u8],
    caps: GroupCaps,
    now_ms: u64,
) -> Result<GroupChangeOutcome, R::Error> {
    let facts = rows.create_facts(id, creator).await?;
    let names: Vec<&str> = members.iter().map(String::as_str).collect();
    let accounts = rows.resolve(&names).await?;
    let joining = plan_create(
        creator,
        members,
        &accounts,
        facts,
        caps.max_members,
        caps.max_created,
    )?;
    rows.insert_group(id, metadata, now_ms, creator).await?;
    rows.insert_member(id, creator, GroupRole::Admin, 1).await?;
    for account in &joining {
        rows.insert_member(id, *account, GroupRole::Member, 1)
            .await?;
    }
    let group = rows.load_group(id, GroupLock::None).await?;
    let notify_devices = rows.devices_of(&member_ids(&group)).await?;
    Ok(GroupChangeOutcome {
        group,
        notify_devices,
    })
}

/// Applies `change` by `actor` (see [`super::GroupStorage::change_group`]):
/// load the group locked for update, resolve the names, plan, write, read
/// it back (or not, when it was deleted); the devices of every member
/// before or after are notified.
///
/// # Errors
/// [`StorageError::UnknownGroup`], the rules' errors ([`plan_change`]) and
/// the rows'.
pub(crate) async fn change<R: GroupRows>(
    rows: &R,
    id: &GroupId,
    actor: i64,
    expected_version: Option<u64>,
    change: &GroupChange,
    max_members: u32,
) -> Result<GroupChangeOutcome, R::Error> {
    let before = rows.load_group(id, GroupLock::Update).await?;
    let accounts = rows.resolve(&named_users(change)).await?;
    let plan = plan_change(
        &before,
        actor,
        expected_version,
        change,
        &accounts,
        max_members,
    )?;
    rows.write_plan(id, &plan).await?;
    let group = match plan.deleted_group(id) {
        Some(gone) => gone,
        None => rows.load_group(id, GroupLock::None).await?,
    };
    let mut accounts = member_ids(&before);
    accounts.extend(member_ids(&group));
    let notify_devices = rows.devices_of(&accounts).await?;
    Ok(GroupChangeOutcome {
        group,
        notify_devices,
    })
}

/// The group as `actor` sees it (see [`super::GroupStorage::group`]).
///
/// # Errors
/// [`StorageError::UnknownGroup`], [`StorageError::NotGroupMember`] and
/// the rows'.
pub(crate) async fn read<R: GroupRows>(
    rows: &R,
    id: &GroupId,
    actor: i64,
) -> Result<GroupRecord, R::Error> {
    let group = rows.load_group(id, GroupLock::None).await?;
    require_member(&group, actor)?;
    Ok(group)
}

/// The devices a group send by `sender_account` from `sender_device`
/// goes to: the group is locked for share (membership holds until the
/// transaction ends), the sender must be a member, and every recipient
/// device of every member except the sending device, in
/// [`GroupRows::recipients_of`] order.
///
/// # Errors
/// [`StorageError::UnknownGroup`], [`StorageError::NotGroupMember`] and
/// the rows'.
pub(crate) async fn send_targets<R: GroupRows>(
    rows: &R,
    id: &GroupId,
    sender_account: i64,
    sender_device: u64,
) -> Result<Vec<u64>, R::Error> {
    let group = rows.load_group(id, GroupLock::Share).await?;
    require_member(&group, sender_account)?;
    let mut devices = rows.recipients_of(&member_ids(&group)).await?;
    devices.retain(|d| *d != sender_device);
    Ok(devices)
}
