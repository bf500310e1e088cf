//! Receiving one envelope over the connection: the shell around
//! [`super::process`]. It runs the planner in a store transaction, and
//! when the planner asks for it, looks at the sender's device list again
//! (SPEC.md §20.5) or fetches the group (§19.8) and runs it once more;
//! then tells the application, queues the delivery receipt, and only then
//! acknowledges the envelope, so a crash in between loses nothing.
//! Not owned here: what the envelope means (mod.rs).

use microbot_protocol::content::Content;
use microbot_protocol::transport::{
    AckEnvelopesRequest, Envelope, ErrorCode, client_frame::Request, response,
};

use super::Outcome;
use crate::account_state::Inner;
use crate::error::{Interrupted, TransportError};
use crate::events::Event;
use crate::groups::refresh::refresh_or_log;
use crate::messages::new_id;
use crate::outbox::QueuedBy;
use crate::transport::Connection;

/// Decrypts, stores, then acknowledges one envelope.
pub(crate) async fn deliver(
    inner: &Inner,
    conn: &Connection,
    envelope: &Envelope,
) -> Result<(), Interrupted> {
    let mut outcome = inner
        .store
        .tx(|tx| super::process(&inner.me, inner.config.delivery_receipts, tx, envelope))?;
    if let Outcome::Unlisted { sender, device } = &outcome {
        let (sender, device) = (sender.clone(), *device);
        // SPEC.md §20.5: a device the remembered list leaves out may have
        // signed itself into a newer one; look again before refusing.
        let refusal = match crate::device_lists::refresh(&inner.store, &inner.me, conn, &sender)
            .await
        {
            Ok(Ok(added)) => {
                for device_id in added.into_iter().filter(|d| *d != inner.me.device_id) {
                    inner.events.emit(Event::DeviceAdded {
                        username: sender.clone(),
                        device_id,
                    });
                }
                outcome = inner.store.tx(|tx| {
                    super::process(&inner.me, inner.config.delivery_receipts, tx, envelope)
                })?;
                format!("device {device} is not in {sender}'s signed device list")
            }
            Ok(Err(refusal)) => refusal.to_string(),
            Err(crate::device_lists::SignError::Transport(error))
                if error.is_connection_problem()
                    || matches!(&error, TransportError::Server(e) if e.code == ErrorCode::RateLimited) =>
            {
                // Unacknowledged: redelivered and looked at again later.
                return Err(error.into());
            }
            Err(crate::device_lists::SignError::Store(error)) => return Err(error.into()),
            Err(error) => error.to_string(),
        };
        if let Outcome::Unlisted { sender, device } = &outcome {
            tracing::warn!(
                device,
                "message from a device outside the signed device list refused"
            );
            inner
                .store
                .tx(|tx| tx.mark_envelope_processed(envelope.envelope_id))?;
            outcome = Outcome::Failed(Event::DecryptionFailed {
                sender: sender.clone(),
                sender_device: *device,
                reason: format!("{}: {refusal}", crate::events::UNLISTED_DEVICE),
            });
        }
    }
    // After the device-list check, which comes first (§20.5).
    if let Outcome::NotKnownMember { group, .. } = &outcome {
        // A group made or changed while this device was away: ask the
        // server (which answers members only) before refusing.
        refresh_or_log(inner.local(), conn, *group).await?;
        outcome = inner
            .store
            .tx(|tx| super::process(&inner.me, inner.config.delivery_receipts, tx, envelope))?;
        if let Outcome::NotKnownMember { sender, device, .. } = &outcome {
            let event = inner
                .store
                .tx(|tx| super::refuse_non_member(tx, envelope, sender, *device))?;
            outcome = Outcome::Failed(event);
        }
    }
    match outcome {
        Outcome::Duplicate | Outcome::Unlisted { .. } | Outcome::NotKnownMember { .. } => {}
        Outcome::Failed(event) => inner.events.emit(event),
        Outcome::Delivered {
            events,
            receipt,
            refresh,
        } => {
            // The group first, so the application finds it when told.
            if let Some(id) = refresh {
                refresh_or_log(inner.local(), conn, id).await?;
            }
            for event in events {
                inner.events.emit(event);
            }
            if let Some((conversation, id)) = receipt {
                let content = Content::delivery_receipt(new_id(), crate::now_ms(), [id]);
                if let Err(error) =
                    crate::outbox::queue(inner, &conversation, content, QueuedBy::Sdk)
                {
                    tracing::debug!(%error, "delivery receipt not queued");
                }
            }
        }
    }
    if inner.config.faults.skip_ack {
        return Ok(());
    }
    match conn
        .request(Request::AckEnvelopes(AckEnvelopesRequest {
            envelope_ids: vec![envelope.envelope_id],
        }))
        .await?
    {
        response::Result::Ack(_) => Ok(()),
        _ => Err(TransportError::UnexpectedResponse { expected: "Ack" }.into()),
    }
}
