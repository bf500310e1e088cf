//! Workload (b): group fan-out (SPEC.md §12.10). The first session creates
//! a group of every session's account; the first `senders` members send
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
use crate::wire::{Session, refusal};

/// Creates the group on `sessions[0]` with everyone in `usernames` (same
/// order as the sessions) and sends `messages` group messages in all,
/// spread over the first `senders` members.
///
/// # Errors
/// The group creation's refusal, or as [`drive`].
pub async fn run(
    mut sessions: Vec<Session>,
    usernames: &[String],
    messages: u64,
    senders: usize,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    let members = sessions.len();
    if members < 2 || usernames.len() != members {
        return Err(LoadError::Invalid(
            "a group needs two members and one name per session",
        ));
    }
    let mut group_id = [0u8; 16];
    rand::rng().fill_bytes(&mut group_id);
    let group_id = Bytes::copy_from_slice(&group_id);
    let creator = sessions
        .first_mut()
        .ok_or(LoadError::Invalid("no sessions"))?;
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
    drive(sessions, plans, config).await
}
