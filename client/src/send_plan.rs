//! What a send does next (SPEC.md §12.7 for 1:1 sends, §12.10 for group
//! sends), decided over a store transaction without I/O: bring the group's
//! membership up to date, fetch the devices of a recipient whose list is
//! stale, fetch our own, send; after the server's refusal, try again or
//! give up. The shells (sessions.rs for 1:1, groups/send.rs for groups)
//! carry out each [`Step`] and feed back what came of it.
//!
//! Invariants: an account's devices are fetched at most once per attempt
//! (an account still without devices after a fetch does not loop);
//! whether a refusal leads to another attempt is send_attempts.rs's rule,
//! applied here and nowhere else; a recipient whose devices cannot be
//! used ends a 1:1 send but is skipped by a group send; a recipient whose
//! safety number changed holds the whole send.
//! Not owned here: fetching and applying device lists (sessions.rs,
//! device_sessions.rs), encrypting and sending (sessions.rs,
//! groups/send.rs).

use std::collections::BTreeSet;
use std::time::Duration;

use microbot_protocol::transport::ErrorCode;

use crate::device_sessions::{META_OWN_DEVICES_CHECKED, reset_own_devices_check};
use crate::error::StoreError;
use crate::groups::GroupId;
use crate::send_attempts::{AfterRefusal, Attempt};
use crate::send_failure::SendFailureReason;
use crate::store::Tx;

/// What the send does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Bring the group's membership up to date from the server, then call
    /// [`SendPlan::group_refreshed`].
    RefreshGroup,
    /// Fetch this account's devices (its prekey bundles and signed device
    /// list) and apply them, then call [`SendPlan::devices_fetched`].
    FetchDevices {
        /// The account.
        username: String,
    },
    /// Fetch our own account's devices and apply them, then call
    /// [`SendPlan::own_devices_fetched`].
    FetchOwnDevices,
    /// Every device is known: encrypt for them and send this attempt;
    /// a refusal goes to [`SendPlan::refused`] or
    /// [`SendPlan::devices_changed`].
    Send(Attempt),
    /// A recipient's safety number changed: the send waits for the user.
    Blocked,
    /// The send can never succeed, for this reason.
    GiveUp(SendFailureReason),
}

/// What came of fetching one recipient's devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DevicesFetched {
    /// Sessions are up to date with the devices served.
    Ready,
    /// The recipient's identity changed; its sends wait.
    Blocked,
    /// The recipient cannot be reached, for this reason.
    Refused(SendFailureReason),
}

/// What a refusal of the server leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The device lists were marked stale: ask [`SendPlan::next`] again.
    TryAgain,
    /// The refusal ends the send.
    Final,
}

/// What a 1:1 attempt does with what it encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Encrypted {
    /// Send the envelopes.
    Send,
    /// Nothing to send (to ourselves, with no other device): the send is
    /// done.
    Nothing,
    /// The recipient has no device we could encrypt for.
    GiveUp(SendFailureReason),
}

/// How fresh our knowledge of a contact's devices is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContactDevices {
    /// Checked within the refresh interval, with devices known.
    Fresh,
    /// Never checked, checked too long ago, or without devices.
    Stale,
    /// Its safety number changed and is not acknowledged: sends wait.
    Blocked,
}

/// How fresh our knowledge of `username`'s devices is at `now_ms`, given
/// the refresh interval.
pub(crate) fn contact_devices(
    tx: &Tx<'_>,
    username: &str,
    now_ms: u64,
    refresh: Duration,
) -> Result<ContactDevices, StoreError> {
    let contact = tx.contact(username)?;
    if contact.as_ref().is_some_and(|c| c.pending.is_some()) {
        return Ok(ContactDevices::Blocked);
    }
    let recent = contact.as_ref().is_some_and(|c| {
        u128::from(now_ms.saturating_sub(c.devices_checked_ms)) < refresh.as_millis()
    });
    Ok(if recent && !tx.session_devices(username)?.is_empty() {
        ContactDevices::Fresh
    } else {
        ContactDevices::Stale
    })
}

/// Whether our own device list was checked within the refresh interval.
pub(crate) fn own_devices_fresh(
    tx: &Tx<'_>,
    now_ms: u64,
    refresh: Duration,
) -> Result<bool, StoreError> {
    let checked = tx.meta_u64(META_OWN_DEVICES_CHECKED)?.unwrap_or(0);
    Ok(u128::from(now_ms.saturating_sub(checked)) < refresh.as_millis())
}

/// Who a send goes to.
#[derive(Debug)]
enum Target {
    /// One account (possibly our own: then only our other devices).
    Direct {
        /// The account.
        to: String,
    },
    /// The members of a group.
    Group {
        /// The group.
        id: GroupId,
        /// Refresh the membership at the next attempt whatever its age.
        force_refresh: bool,
        /// The membership was refreshed in this attempt.
        refreshed: bool,
    },
}

/// The plan of one send across its attempts.
#[derive(Debug)]
pub(crate) struct SendPlan {
    me: String,
    target: Target,
    refresh: Duration,
    attempt: Attempt,
    /// The attempts are used up: the send gives up.
    exhausted: bool,
    /// The other accounts of this attempt; `None` until the group's
    /// membership is read.
    recipients: Option<Vec<String>>,
    /// Accounts whose devices were fetched in this attempt.
    fetched: BTreeSet<String>,
    /// Our own devices were fetched in this attempt.
    own_fetched: bool,
    /// Group members skipped in this attempt (no usable devices).
    skipped: BTreeSet<String>,
    /// How the send ends, once a fetch decided it.
    ended: Option<Step>,
}

impl SendPlan {
    /// A 1:1 send from `me` to `to`; device lists older than `refresh`
    /// are fetched again.
    pub(crate) fn direct(me: &str, to: &str, refresh: Duration) -> Self {
        let recipients = if to == me {
            Vec::new()
        } else {
            vec![to.to_owned()]
        };
        Self::new(
            me,
            Target::Direct { to: to.to_owned() },
            refresh,
            Some(recipients),
        )
    }

    /// A send from `me` to the members of group `id`; the membership and
    /// device lists older than `refresh` are fetched again.
    pub(crate) fn group(me: &str, id: GroupId, refresh: Duration) -> Self {
        let target = Target::Group {
            id,
            force_refresh: false,
            refreshed: false,
        };
        Self::new(me, target, refresh, None)
    }

    fn new(me: &str, target: Target, refresh: Duration, recipients: Option<Vec<String>>) -> Self {
        SendPlan {
            me: me.to_owned(),
            target,
            refresh,
            attempt: Attempt::first(),
            exhausted: false,
            recipients,
            fetched: BTreeSet::new(),
            own_fetched: false,
            skipped: BTreeSet::new(),
            ended: None,
        }
    }

    /// What the send does next, from what `tx` holds at `now_ms`.
    pub(crate) fn next(&mut self, tx: &Tx<'_>, now_ms: u64) -> Result<Step, StoreError> {
        if let Some(end) = &self.ended {
            return Ok(end.clone());
        }
        if self.exhausted {
            return Ok(Step::GiveUp(self.keeps_changing()));
        }
        let recipients = match &self.recipients {
            Some(recipients) => recipients.clone(),
            None => match self.group_members(tx, now_ms)? {
                Ok(members) => {
                    self.recipients = Some(members.clone());
                    members
                }
                Err(step) => return Ok(step),
            },
        };
        for name in &recipients {
            if self.fetched.contains(name) {
                continue;
            }
            match contact_devices(tx, name, now_ms, self.refresh)? {
                ContactDevices::Fresh => {}
                ContactDevices::Blocked => return Ok(Step::Blocked),
                ContactDevices::Stale => {
                    return Ok(Step::FetchDevices {
                        username: name.clone(),
                    });
                }
            }
        }
        if !self.own_fetched && !own_devices_fresh(tx, now_ms, self.refresh)? {
            return Ok(Step::FetchOwnDevices);
        }
        Ok(Step::Send(self.attempt))
    }

    /// The group's members other than us, or the step that comes first
    /// (a refresh, or giving up).
    fn group_members(
        &self,
        tx: &Tx<'_>,
        now_ms: u64,
    ) -> Result<Result<Vec<String>, Step>, StoreError> {
        let Target::Group {
            id,
            force_refresh,
            refreshed,
        } = &self.target
        else {
            return Ok(Ok(Vec::new()));
        };
        let Some(record) = tx.group(id)? else {
            // A group that vanished in its refresh is one we are not in.
            let reason = if *refreshed {
                SendFailureReason::NotGroupMember { group_id: *id }
            } else {
                SendFailureReason::UnknownGroup { group_id: *id }
            };
            return Ok(Err(Step::GiveUp(reason)));
        };
        let stale = *force_refresh
            || u128::from(now_ms.saturating_sub(record.checked_ms)) >= self.refresh.as_millis();
        if (stale || !record.active) && !*refreshed {
            return Ok(Err(Step::RefreshGroup));
        }
        if !record.active {
            return Ok(Err(Step::GiveUp(SendFailureReason::NotGroupMember {
                group_id: *id,
            })));
        }
        Ok(Ok(record
            .usernames()
            .into_iter()
            .filter(|name| *name != self.me)
            .collect()))
    }

    /// The group's membership was fetched (and applied to the store).
    pub(crate) fn group_refreshed(&mut self) {
        if let Target::Group {
            force_refresh,
            refreshed,
            ..
        } = &mut self.target
        {
            *force_refresh = false;
            *refreshed = true;
        }
    }

    /// `username`'s devices were fetched, with this outcome. A 1:1 send
    /// to an account that cannot be reached gives up; a group send skips
    /// the member.
    pub(crate) fn devices_fetched(&mut self, username: &str, outcome: DevicesFetched) {
        self.fetched.insert(username.to_owned());
        match outcome {
            DevicesFetched::Ready => {}
            DevicesFetched::Blocked => self.ended = Some(Step::Blocked),
            DevicesFetched::Refused(reason) => match self.target {
                Target::Direct { .. } => self.ended = Some(Step::GiveUp(reason)),
                Target::Group { .. } => {
                    tracing::warn!(
                        reason = reason.kind(),
                        "group member without usable devices skipped"
                    );
                    self.skipped.insert(username.to_owned());
                }
            },
        }
    }

    /// Our own devices were fetched (and applied to the store).
    pub(crate) fn own_devices_fetched(&mut self) {
        self.own_fetched = true;
    }

    /// The other accounts this attempt reaches: for a group, its members
    /// but us and those skipped.
    pub(crate) fn recipients(&self) -> Vec<String> {
        self.recipients
            .iter()
            .flatten()
            .filter(|name| !self.skipped.contains(*name))
            .cloned()
            .collect()
    }

    /// The accounts a 1:1 attempt claims complete (SPEC.md §12.7): both,
    /// when it checks the device set; none on the last attempt.
    pub(crate) fn complete_accounts(&self) -> Vec<String> {
        if !self.attempt.checks_devices() {
            return Vec::new();
        }
        let mut accounts = vec![self.me.clone()];
        accounts.extend(self.recipients.iter().flatten().cloned());
        accounts
    }

    /// What a 1:1 attempt does with its envelopes: `for_recipient` of
    /// them for the recipient's devices, `total` in all (the rest for our
    /// own other devices).
    pub(crate) fn encrypted(&self, for_recipient: usize, total: usize) -> Encrypted {
        if let Target::Direct { to } = &self.target
            && *to != self.me
            && for_recipient == 0
        {
            return Encrypted::GiveUp(SendFailureReason::NoDevices {
                username: to.clone(),
            });
        }
        if total == 0 {
            Encrypted::Nothing
        } else {
            Encrypted::Send
        }
    }

    /// The server refused the attempt with `code`, naming `device_ids`:
    /// for a refusal that says the device set changed (within the retry
    /// budget of send_attempts.rs), removed devices are forgotten in `tx`,
    /// every recipient's device list and our own are marked stale, and the
    /// next attempt follows.
    pub(crate) fn refused(
        &mut self,
        tx: &Tx<'_>,
        code: ErrorCode,
        device_ids: &[u64],
    ) -> Result<Refused, StoreError> {
        let AfterRefusal::Recheck { removed } = self.attempt.after_refusal(code, device_ids) else {
            return Ok(Refused::Final);
        };
        let recipients: Vec<String> = self.recipients.iter().flatten().cloned().collect();
        for device in &removed {
            for name in &recipients {
                tx.delete_device(name, *device)?;
            }
            tx.delete_device(&self.me, *device)?;
        }
        for name in &recipients {
            if let Some(mut contact) = tx.contact(name)? {
                contact.devices_checked_ms = 0;
                tx.set_contact(name, &contact)?;
            }
        }
        reset_own_devices_check(tx)?;
        self.devices_changed(true);
        Ok(Refused::TryAgain)
    }

    /// The device set changed while this attempt was under way (the
    /// caller already forgot the stale devices): the next attempt
    /// follows, refreshing a group's membership first when
    /// `refresh_group`; after a non-checking attempt the send gives up.
    pub(crate) fn devices_changed(&mut self, refresh_group: bool) {
        let next = self.attempt.checks_devices().then(|| self.attempt.next());
        let Some(Some(next)) = next else {
            self.exhausted = true;
            return;
        };
        self.attempt = next;
        self.fetched.clear();
        self.own_fetched = false;
        self.skipped.clear();
        self.ended = None;
        if let Target::Group {
            force_refresh,
            refreshed,
            ..
        } = &mut self.target
        {
            *force_refresh = refresh_group;
            *refreshed = false;
            self.recipients = None;
        }
    }

    /// Why the send gives up when the device set keeps changing.
    fn keeps_changing(&self) -> SendFailureReason {
        match &self.target {
            Target::Direct { to } => SendFailureReason::DevicesKeepChanging {
                username: to.clone(),
            },
            Target::Group { id, .. } => {
                SendFailureReason::GroupDevicesKeepChanging { group_id: *id }
            }
        }
    }
}

#[cfg(test)]
mod tests;
