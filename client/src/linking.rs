//! Linking a new device through a provisioning slot (SPEC.md §12.14).
//!
//! ```text
//! new device                        server                     existing device
//! LinkRequest::create ──CreateProvisioningSlot──▶ slot id
//! shows ProvisioningCode (ephemeral X25519 public key ‖ slot id, text / QR)
//!                                                  ◀──PutProvisioningSlot── Account::link_device(code)
//!                                                       sealed(identity seed, contacts, groups)
//! LinkRequest::wait ──FetchProvisioningSlot (poll)──▶ sealed, slot deleted
//! Account::enrol_provisioned: password + TOTP like any device, then the
//! contacts and groups are imported
//! ```
//!
//! The server relays only the sealed message (crypto-core `provisioning`)
//! and forgets the slot after one read or a few minutes. The code shown by
//! the new device must reach the existing device over a channel the user
//! trusts (reading it off the screen): whoever substitutes the key in it
//! receives the account's identity. Not owned here: the seal itself
//! (crypto-core), the slot (server), enrolment (auth.rs).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use microbot_crypto::provisioning::{self, ProvisioningError, ProvisioningKeyPair};
use microbot_protocol::content::{ProvisionMessage, ProvisionedContact, ProvisionedGroup};
use microbot_protocol::transport::{
    CreateProvisioningSlotRequest, ErrorCode, FetchProvisioningSlotRequest,
    PutProvisioningSlotRequest, client_frame::Request, response,
};
use prost::Message as _;
use zeroize::Zeroizing;

use crate::account::{Account, Enrolment, IdentitySource, LinkedIdentity};
use crate::account_state::Inner;
use crate::auth::{CLIENT_AGENT, SecondFactor};
use crate::config::{AccountConfig, ServerConfig, StoreConfig};
use crate::error::{AuthError, OpenError, StoreError, TransportError};
use crate::events::Events;
use crate::groups::GroupId;
use crate::link_history;
use crate::store::Contact;
use crate::transport::{CONNECT_TIMEOUT, Connection};

/// Length of a provisioning slot id.
pub const SLOT_ID_LEN: usize = 16;
/// Most contacts one provisioning message carries (SPEC.md §12.14).
pub const MAX_PROVISIONED_CONTACTS: usize = 2000;
/// Most groups one provisioning message carries (SPEC.md §12.14).
pub const MAX_PROVISIONED_GROUPS: usize = 500;
/// How often [`LinkRequest::wait`] asks the server.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// RFC 4648 base32 alphabet (the code's text form).
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Why linking failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The provisioning code is not 48 bytes of base32 (a typo?).
    #[error("not a provisioning code")]
    InvalidCode,
    /// The slot is gone: expired, already read, or already used.
    #[error("the provisioning code expired or was already used; start linking again")]
    SlotGone,
    /// Nothing arrived before the deadline.
    #[error("no provisioning message arrived in time")]
    TimedOut,
    /// The sealed message does not open with this device's key.
    #[error("the provisioning message does not open: {0}")]
    Seal(#[from] ProvisioningError),
    /// The opened message is not a valid `ProvisionMessage`.
    #[error("invalid provisioning message: {0}")]
    InvalidMessage(&'static str),
    /// The existing device is not connected.
    #[error("not connected to the server")]
    NotConnected,
    /// The server could not be reached or refused a request.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the new device shows: its ephemeral public key and the slot id.
#[derive(Clone, PartialEq, Eq)]
pub struct ProvisioningCode {
    /// The new device's ephemeral X25519 public key.
    pub public_key: [u8; 32],
    /// The server's slot id.
    pub slot_id: [u8; SLOT_ID_LEN],
}

impl fmt::Debug for ProvisioningCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl ProvisioningCode {
    /// The text form: base32 (RFC 4648, no padding) of `public_key ‖ slot_id`
    /// in groups of four letters joined by `-` (the QR code holds the same text).
    pub fn to_text(&self) -> String {
        let mut bytes = Vec::with_capacity(32 + SLOT_ID_LEN);
        bytes.extend_from_slice(&self.public_key);
        bytes.extend_from_slice(&self.slot_id);
        let plain = base32_encode(&bytes);
        plain
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Parses [`ProvisioningCode::to_text`]; case, dashes and spaces do not matter.
    ///
    /// # Errors
    /// [`LinkError::InvalidCode`].
    pub fn parse(text: &str) -> Result<Self, LinkError> {
        let cleaned: String = text
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '\n' | '\t'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = base32_decode(&cleaned).ok_or(LinkError::InvalidCode)?;
        if bytes.len() != 32 + SLOT_ID_LEN {
            return Err(LinkError::InvalidCode);
        }
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(&bytes[..32]);
        let mut slot_id = [0u8; SLOT_ID_LEN];
        slot_id.copy_from_slice(&bytes[32..]);
        Ok(Self {
            public_key,
            slot_id,
        })
    }
}

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = BASE32.iter().position(|&a| a == c)?;
        buffer = ((buffer << 5) | u32::try_from(value).ok()?) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// Zeroes a buffer once it is the last handle on its bytes (the views
/// decoded from it are dropped by then).
fn wipe(bytes: Bytes) {
    if let Ok(mut owned) = bytes.try_into_mut() {
        zeroize::Zeroize::zeroize(owned.as_mut());
    }
}

/// What a new device received: the account, its identity and its state.
pub struct Provisioned {
    /// The account's username.
    pub username: String,
    /// The account's identity (secret).
    pub identity: LinkedIdentity,
    /// Contacts and the identity key trusted for each.
    pub contacts: Vec<(String, [u8; 32])>,
    /// Groups the account is in, with their metadata keys (secret; may be empty).
    groups: Vec<(GroupId, Zeroizing<Vec<u8>>)>,
    /// Recent messages, when the existing device's user agreed to send them.
    history: Vec<(
        crate::events::Conversation,
        String,
        microbot_protocol::content::Content,
    )>,
}

impl fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provisioned")
            .field("username", &self.username)
            .field("contacts", &self.contacts.len())
            .field("groups", &self.groups.len())
            .field("history", &self.history.len())
            .finish_non_exhaustive()
    }
}

impl Provisioned {
    /// How many history messages came with the account (0 unless the
    /// existing device's user agreed to send history).
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// The groups the account is in.
    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.iter().map(|(id, _)| *id).collect()
    }

    /// Decodes the opened message. The seed is decoded as a view into
    /// `plaintext`'s buffer (no copy), which is wiped before returning.
    fn decode(mut plaintext: Zeroizing<Vec<u8>>) -> Result<Self, LinkError> {
        let buffer = Bytes::from(std::mem::take(&mut *plaintext));
        let decoded = ProvisionMessage::decode(buffer.clone())
            .map_err(|_| LinkError::InvalidMessage("does not decode"))
            .and_then(Self::from_message);
        wipe(buffer);
        decoded
    }

    fn from_message(message: ProvisionMessage) -> Result<Self, LinkError> {
        if !crate::auth::valid_username(&message.username) {
            return Err(LinkError::InvalidMessage("invalid username"));
        }
        let seed = <[u8; 32]>::try_from(message.identity_seed.as_ref())
            .map_err(|_| LinkError::InvalidMessage("identity seed must be 32 bytes"))?;
        if message.contacts.len() > MAX_PROVISIONED_CONTACTS
            || message.groups.len() > MAX_PROVISIONED_GROUPS
        {
            return Err(LinkError::InvalidMessage("too many contacts or groups"));
        }
        let mut contacts = Vec::with_capacity(message.contacts.len());
        for contact in &message.contacts {
            let key = <[u8; 32]>::try_from(contact.identity_key.as_ref())
                .map_err(|_| LinkError::InvalidMessage("identity key must be 32 bytes"))?;
            if !crate::auth::valid_username(&contact.username) {
                return Err(LinkError::InvalidMessage("invalid contact username"));
            }
            contacts.push((contact.username.clone(), key));
        }
        let mut groups = Vec::with_capacity(message.groups.len());
        for group in &message.groups {
            let id = GroupId::from_slice(&group.group_id)
                .ok_or(LinkError::InvalidMessage("group id must be 16 bytes"))?;
            if !matches!(group.metadata_key.len(), 0 | 32) {
                return Err(LinkError::InvalidMessage("metadata key must be 32 bytes"));
            }
            groups.push((id, Zeroizing::new(group.metadata_key.to_vec())));
        }
        let history = link_history::check(message.history).map_err(LinkError::InvalidMessage)?;
        Ok(Self {
            username: message.username,
            identity: LinkedIdentity::from_seed(seed),
            contacts,
            groups,
            history,
        })
    }
}

/// A slot opened by the new device, waiting for the existing device.
#[derive(Debug)]
pub struct LinkRequest {
    server: ServerConfig,
    keys: ProvisioningKeyPair,
    code: ProvisioningCode,
    expires_at_ms: u64,
}

impl LinkRequest {
    /// Opens a provisioning slot on the server (no account needed) with a
    /// fresh ephemeral key pair.
    ///
    /// # Errors
    /// [`LinkError::Transport`] (the server refuses with `RATE_LIMITED`
    /// when this address opened too many slots).
    pub async fn create(server: &ServerConfig) -> Result<Self, LinkError> {
        let (conn, _pushes) =
            Connection::connect_any(server, 0, CLIENT_AGENT, CONNECT_TIMEOUT).await?;
        let slot = match conn
            .request(Request::CreateProvisioningSlot(
                CreateProvisioningSlotRequest {},
            ))
            .await?
        {
            response::Result::ProvisioningSlot(slot) => slot,
            _ => {
                return Err(TransportError::UnexpectedResponse {
                    expected: "ProvisioningSlot",
                }
                .into());
            }
        };
        let slot_id = <[u8; SLOT_ID_LEN]>::try_from(slot.slot_id.as_ref()).map_err(|_| {
            TransportError::UnexpectedResponse {
                expected: "a 16-byte slot id",
            }
        })?;
        let keys = ProvisioningKeyPair::generate(&mut rand::rng());
        Ok(Self {
            server: server.clone(),
            code: ProvisioningCode {
                public_key: keys.public(),
                slot_id,
            },
            keys,
            expires_at_ms: slot.expires_at_ms,
        })
    }

    /// The code to show (as text or QR) to the existing device.
    pub fn code(&self) -> &ProvisioningCode {
        &self.code
    }

    /// When the server forgets the slot (ms since the epoch).
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }

    /// Waits (polling the slot) until the existing device posted the sealed
    /// message, at most `timeout` and never past the slot's expiry; opens it.
    ///
    /// # Errors
    /// [`LinkError::TimedOut`], [`LinkError::SlotGone`], [`LinkError::Seal`]
    /// (the message was not sealed to this device's key), …
    pub async fn wait(self, timeout: Duration) -> Result<Provisioned, LinkError> {
        let until_expiry = self.expires_at_ms.saturating_sub(crate::now_ms());
        let deadline =
            tokio::time::Instant::now() + timeout.min(Duration::from_millis(until_expiry));
        loop {
            let connected =
                Connection::connect_any(&self.server, 0, CLIENT_AGENT, CONNECT_TIMEOUT).await;
            let conn = match connected {
                Ok((conn, _pushes)) => conn,
                Err(error) if error.is_connection_problem() => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(LinkError::TimedOut);
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            // Poll on this connection until the server closes it (it allows
            // a connection without login only so long) or the message arrives.
            loop {
                if tokio::time::Instant::now() >= deadline {
                    return Err(LinkError::TimedOut);
                }
                let answer = conn
                    .request(Request::FetchProvisioningSlot(
                        FetchProvisioningSlotRequest {
                            slot_id: Bytes::copy_from_slice(&self.code.slot_id),
                        },
                    ))
                    .await;
                match answer {
                    Ok(response::Result::ProvisioningMessage(message)) if message.ready => {
                        let plaintext = self.keys.open(&self.code.slot_id, &message.sealed)?;
                        return Provisioned::decode(plaintext);
                    }
                    Ok(response::Result::ProvisioningMessage(_)) => {}
                    Ok(_) => {
                        return Err(TransportError::UnexpectedResponse {
                            expected: "ProvisioningMessage",
                        }
                        .into());
                    }
                    Err(error)
                        if error.server_code() == Some(ErrorCode::UnknownProvisioningSlot) =>
                    {
                        return Err(LinkError::SlotGone);
                    }
                    Err(error) if error.is_connection_problem() => break,
                    Err(error) => return Err(error.into()),
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }
}

/// Giving the account to a new device, and enrolling one that was given it.
pub(crate) struct Linking<'a> {
    /// The account's shared state.
    pub(crate) inner: &'a Inner,
}

impl Linking<'_> {
    /// Gives this account to the new device that shows `code`: seals the
    /// identity and the contacts and groups to the code's key and posts it
    /// to its slot. Needs the connection.
    ///
    /// # Errors
    /// [`LinkError::InvalidCode`], [`LinkError::NotConnected`],
    /// [`LinkError::SlotGone`] (expired or already used), …
    pub(crate) async fn link_device(&self, code: &str) -> Result<(), LinkError> {
        self.link(code, None).await
    }

    /// [`Account::link_device`], also sending the newest `per_conversation`
    /// messages of every conversation (with their edits and deletes) — only
    /// with the user's agreement: the new device then holds that history.
    /// At most [`link_history::MAX_PROVISIONED_HISTORY`] messages and
    /// [`link_history::HISTORY_BUDGET`] bytes go; older ones are left out.
    ///
    /// # Errors
    /// As [`Account::link_device`].
    pub(crate) async fn link_device_with_history(
        &self,
        code: &str,
        per_conversation: u32,
    ) -> Result<(), LinkError> {
        self.link(code, Some(per_conversation)).await
    }

    async fn link(&self, code: &str, history: Option<u32>) -> Result<(), LinkError> {
        let code = ProvisioningCode::parse(code)?;
        let inner = self.inner;
        let plaintext = inner.store.tx(|tx| -> Result<_, StoreError> {
            let contacts = tx
                .contacts()?
                .into_iter()
                .take(MAX_PROVISIONED_CONTACTS)
                .map(|(username, contact)| ProvisionedContact {
                    username,
                    identity_key: Bytes::copy_from_slice(&contact.identity),
                })
                .collect();
            let groups = tx
                .groups()?
                .into_iter()
                .filter(|(_, record)| record.active)
                .take(MAX_PROVISIONED_GROUPS)
                .map(|(id, record)| ProvisionedGroup {
                    group_id: Bytes::copy_from_slice(id.as_bytes()),
                    metadata_key: Bytes::copy_from_slice(&record.metadata_key),
                })
                .collect();
            let history = match history {
                Some(limit) if limit > 0 => link_history::collect(tx, limit)?,
                _ => Vec::new(),
            };
            let seed = Bytes::from(inner.me.identity.to_seed().to_vec());
            let message = ProvisionMessage {
                username: inner.me.username.clone(),
                identity_seed: seed.clone(),
                contacts,
                groups,
                history,
            };
            let encoded = Zeroizing::new(message.encode_to_vec());
            drop(message);
            wipe(seed);
            Ok(encoded)
        })?;
        let sealed = provisioning::seal(
            &mut rand::rng(),
            &code.public_key,
            &code.slot_id,
            &plaintext,
        )?;
        let conn = inner.online.get().ok_or(LinkError::NotConnected)?;
        let answer = conn
            .request(Request::PutProvisioningSlot(PutProvisioningSlotRequest {
                slot_id: Bytes::copy_from_slice(&code.slot_id),
                sealed: Bytes::from(sealed),
            }))
            .await;
        match answer {
            Ok(result) => Ok(crate::auth::expect_ok(result)?),
            Err(error) if error.server_code() == Some(ErrorCode::UnknownProvisioningSlot) => {
                Err(LinkError::SlotGone)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Enrols this device on the account it was given (password + second
    /// factor, like any device), with the account's identity, then keeps
    /// the contacts (trusted identities) and groups it received; the groups
    /// are brought up to date from the server when connected. `provisioned`
    /// is only read, so a wrong code can be retried with the same one.
    ///
    /// # Errors
    /// [`AuthError`], as [`Account::enrol`].
    pub(crate) async fn enrol_provisioned(
        store: &StoreConfig,
        server: ServerConfig,
        provisioned: &Provisioned,
        password: Zeroizing<String>,
        second_factor: SecondFactor,
        config: AccountConfig,
    ) -> Result<(Account, Events), AuthError> {
        let Provisioned {
            username,
            identity,
            contacts,
            groups,
            history,
        } = provisioned;
        let (account, events) = Account::enrol(
            store,
            server,
            Enrolment {
                username: username.clone(),
                password,
                second_factor,
                identity: IdentitySource::Linked(LinkedIdentity::from_seed(*identity.seed())),
            },
            config,
        )
        .await?;
        account
            .inner
            .store
            .tx(|tx| -> Result<(), StoreError> {
                for (username, identity) in contacts {
                    tx.set_contact(
                        username,
                        &Contact {
                            identity: *identity,
                            pending: None,
                            devices_checked_ms: 0,
                        },
                    )?;
                }
                for (id, key) in groups {
                    if tx.group(id)?.is_none() {
                        let mut record = crate::groups::state::empty_record();
                        record.metadata_key = key.to_vec();
                        tx.set_group(id, &record)?;
                    }
                }
                link_history::import(tx, history)
            })
            .map_err(OpenError::from)?;
        Ok((account, events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_round_trips_and_tolerates_case_and_spaces() {
        let code = ProvisioningCode {
            public_key: [0xa5; 32],
            slot_id: [0x3c; SLOT_ID_LEN],
        };
        let text = code.to_text();
        assert_eq!(text.replace('-', "").len(), 77);
        assert_eq!(ProvisioningCode::parse(&text).unwrap(), code);
        let sloppy = text.to_ascii_lowercase().replace('-', " ");
        assert_eq!(ProvisioningCode::parse(&sloppy).unwrap(), code);
    }

    #[test]
    fn a_mistyped_code_is_refused() {
        let text = ProvisioningCode {
            public_key: [1; 32],
            slot_id: [2; SLOT_ID_LEN],
        }
        .to_text();
        assert!(matches!(
            ProvisioningCode::parse(&text[..text.len() - 5]),
            Err(LinkError::InvalidCode)
        ));
        assert!(matches!(
            ProvisioningCode::parse(&format!("1{}", &text[1..])),
            Err(LinkError::InvalidCode)
        ));
        assert!(matches!(
            ProvisioningCode::parse(""),
            Err(LinkError::InvalidCode)
        ));
    }

    #[test]
    fn a_message_with_a_short_seed_is_refused() {
        let message = ProvisionMessage {
            username: "alice".into(),
            identity_seed: Bytes::from_static(&[1; 31]),
            contacts: Vec::new(),
            groups: Vec::new(),
            history: Vec::new(),
        };
        assert!(matches!(
            Provisioned::decode(Zeroizing::new(message.encode_to_vec())),
            Err(LinkError::InvalidMessage(_))
        ));
    }
}
