//! Workload (b): group fan-out (SPEC.md §12.10). The first channel creates
//! a group of every channel's account; the first `senders` members send
//! `SendGroupRequest`s, and every other member receives each message.
//! Throughput is counted in delivered envelopes (one per recipient).
//!
//! Not owned here: the engine (driver.rs).

use std::sync::Arc;

use bytes::Bytes;
use microbot_protocol::transport::{
    CreateGroupRequest, SendGroupRequest, client_frame::Request, response,
};
use rand::Rng as _;

use crate::driver::{DriveConfig, DriveReport, Plan, drive};
use crate::error::{LoadError, LoadResult};
use crate::wire::{RequestChannel, refusal};

/// Creates the group on `channels[0]` with everyone in `usernames` (same
/// order as the channels) and sends `messages` group messages in all,
/// spread over the first `senders` members.
///
/// # Errors
/// The group creation's refusal, or as [`drive`].
pub async fn run(
    mut channels: Vec<RequestChannel>,
    usernames: &[String],
    messages: u64,
    senders: usize,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    let members = channels.len();
    if members < 2 || usernames.len() != members {
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
    let senders = senders.clamp(1, members);
    let senders_u64 = u64::try_from(senders).unwrap_or(1);
    let fan_out = u64::try_from(members - 1).unwrap_or(0);
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
