//! Workload (b): group fan-out (SPEC.md §12.10). The first channel creates
//! a group of every channel's account and every other member receives its
//! announcement (`group_changed`); then the first `senders` members send
//! `SendGroupRequest`s, and every other member receives each message.
//! Throughput is counted in delivered envelopes (one per recipient), from
//! the first message on: the group exists before the clock starts.
//!
//! Not owned here: the engine (driver.rs).

use std::sync::Arc;

use bytes::Bytes;
use microbot_protocol::transport::{
    CreateGroupRequest, Push, SendGroupRequest, client_frame::Request, push, response,
};
use rand::Rng as _;

use crate::driver::{DriveConfig, DriveReport, Plan, drive};
use crate::error::{LoadError, LoadResult};
use crate::wire::{RequestChannel, refusal};

/// Creates the group and sends `messages` group messages in all, spread
/// over the first `senders` members ([`create_group`], then [`send`]).
///
/// # Errors
/// As [`create_group`] and [`send`].
pub async fn run(
    mut channels: Vec<RequestChannel>,
    usernames: &[String],
    messages: u64,
    senders: usize,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    let group_id = create_group(&mut channels, usernames).await?;
    send(channels, group_id, messages, senders, config).await
}

/// Creates a group on `channels[0]` with everyone in `usernames` (same
/// order as the channels) and returns its id once every other member has
/// received the announcement, so that the group's first messages do not
/// queue behind it (each announcement lists every member).
///
/// # Errors
/// [`LoadError::Invalid`] for fewer than two members or mismatched names,
/// the creation's refusal, or a member's connection failing or timing out
/// before the announcement.
pub async fn create_group(
    channels: &mut Vec<RequestChannel>,
    usernames: &[String],
) -> LoadResult<Bytes> {
    if channels.len() < 2 || usernames.len() != channels.len() {
        return Err(LoadError::Invalid(
            "a group needs two members and one name per channel",
        ));
    }
    let mut group_id = [0u8; 16];
    rand::rng().fill_bytes(&mut group_id);
    let group_id = Bytes::copy_from_slice(&group_id);
    let creator = channels
        .first_mut()
        .ok_or(LoadError::Invalid("no channels"))?;
    let reply = creator
        .request(Request::CreateGroup(CreateGroupRequest {
            group_id: group_id.clone(),
            members: usernames.iter().skip(1).cloned().collect(),
            encrypted_metadata: Bytes::from_static(b"loadgen group"),
        }))
        .await?;
    if !matches!(reply, response::Result::Group(_)) {
        return Err(refusal("CreateGroup", reply));
    }
    // Every member reads its announcement at once; the channels come back
    // in their order.
    let mut waits = tokio::task::JoinSet::new();
    for (i, mut channel) in std::mem::take(channels).into_iter().enumerate() {
        let group_id = group_id.clone();
        waits.spawn(async move {
            let announced = if i == 0 {
                Ok(())
            } else {
                channel
                    .await_push(|p| announces(p, &group_id))
                    .await
                    .map(|_| ())
            };
            (i, channel, announced)
        });
    }
    let mut back = Vec::with_capacity(waits.len());
    while let Some(joined) = waits.join_next().await {
        let (i, channel, announced) = joined.map_err(|e| LoadError::Connection(e.to_string()))?;
        announced?;
        back.push((i, channel));
    }
    back.sort_by_key(|(i, _)| *i);
    *channels = back.into_iter().map(|(_, channel)| channel).collect();
    Ok(group_id)
}

/// Whether `push` announces the group `group_id`.
fn announces(push: &Push, group_id: &Bytes) -> bool {
    matches!(&push.event, Some(push::Event::GroupChanged(info)) if info.group_id == *group_id)
}

/// Sends `messages` group messages to `group_id` in all, spread over the
/// first `senders` members of `channels` (members of the group, logged in).
///
/// # Errors
/// As [`drive`].
pub async fn send(
    channels: Vec<RequestChannel>,
    group_id: Bytes,
    messages: u64,
    senders: usize,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    let members = channels.len();
    let senders = senders.clamp(1, members.max(1));
    let senders_u64 = u64::try_from(senders).unwrap_or(1);
    let fan_out = u64::try_from(members.saturating_sub(1)).unwrap_or(0);
    let plans = (0..members)
        .map(|i| {
            let i = u64::try_from(i).unwrap_or(u64::MAX);
            let sends = if i < senders_u64 {
                messages / senders_u64 + u64::from(i < messages % senders_u64)
            } else {
                0
            };
            let group_id = group_id.clone();
            Plan {
                sends,
                fan_out,
                build: Arc::new(move |ciphertext| {
                    Request::SendGroup(SendGroupRequest {
                        group_id: group_id.clone(),
                        ciphertext,
                        ..SendGroupRequest::default()
                    })
                }),
            }
        })
        .collect();
    drive(channels, plans, config).await
}
