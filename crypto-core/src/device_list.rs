//! The signed device list of an account (SPEC.md §20): which devices may
//! receive the account's messages, signed by the account's identity key so
//! a server cannot add a device of its own.
//!
//! Invariants: one list has exactly one encoding (a fixed layout, device ids
//! strictly increasing), so the signed bytes are the stored and sent bytes;
//! a [`SignedDeviceList`] exists only once its signature verified under the
//! identity key it was checked with. Parsing never panics: every malformed
//! input is a [`DeviceListError`].
//!
//! ```text
//! body   = DEVICE_LIST_VERSION (0x01)              1 byte
//!        ‖ username_len                            1 byte, 3..=32
//!        ‖ username                                ASCII [a-z0-9_.-]
//!        ‖ version                                 8 bytes, big-endian, ≥ 1
//!        ‖ timestamp_ms                            8 bytes, big-endian
//!        ‖ count                                   2 bytes, big-endian, 1..=MAX_DEVICE_LIST_DEVICES
//!        ‖ device_id × count                       8 bytes each, big-endian, strictly increasing
//! signed = body ‖ Ed25519(identity, DEVICE_LIST_LABEL ‖ body)   64 bytes
//! ```
//!
//! Not owned here: which list is the latest one (the server and the client
//! remember versions), and the transport that carries it.

use crate::identity::{IdentityKey, IdentityKeyPair};
use crate::labels::{
    DEVICE_LIST_LABEL, DEVICE_LIST_VERSION, MAX_DEVICE_LIST_DEVICES, MAX_DEVICE_LIST_USERNAME_LEN,
    MIN_DEVICE_LIST_USERNAME_LEN, SIGNATURE_LEN,
};

/// Why a device list was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceListError {
    /// The bytes end before the layout does.
    #[error("device list truncated")]
    Truncated,
    /// Bytes follow the signature.
    #[error("bytes after the device list's signature")]
    TrailingBytes,
    /// The first byte is not `DEVICE_LIST_VERSION`.
    #[error("unsupported device list version")]
    UnsupportedVersion,
    /// The username is not 3..=32 bytes of `[a-z0-9_.-]`.
    #[error("invalid username in device list")]
    InvalidUsername,
    /// The list's version is 0.
    #[error("device list version 0")]
    ZeroVersion,
    /// No device, or more than `MAX_DEVICE_LIST_DEVICES`.
    #[error("device list holds no device or too many")]
    DeviceCount,
    /// Device ids not strictly increasing (unsorted or repeated).
    #[error("device ids not strictly increasing")]
    NotAscending,
    /// The signature does not verify under the identity key.
    #[error("device list signature does not verify")]
    BadSignature,
    /// The list names another account than the one it was fetched for.
    #[error("device list of another account")]
    WrongUsername,
}

/// The content of a device list, before or after signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList {
    username: String,
    version: u64,
    timestamp_ms: u64,
    device_ids: Vec<u64>,
}

impl DeviceList {
    /// A list of `device_ids` (any order, sorted here; a repeated id is
    /// refused) for `username` at `version` (≥ 1).
    ///
    /// # Errors
    /// `InvalidUsername`, `ZeroVersion`, `DeviceCount`, `NotAscending` (a
    /// repeated id).
    pub fn new(
        username: &str,
        version: u64,
        timestamp_ms: u64,
        device_ids: &[u64],
    ) -> Result<Self, DeviceListError> {
        let mut ids = device_ids.to_vec();
        ids.sort_unstable();
        let list = DeviceList {
            username: username.to_owned(),
            version,
            timestamp_ms,
            device_ids: ids,
        };
        list.check()?;
        Ok(list)
    }

    fn check(&self) -> Result<(), DeviceListError> {
        if !valid_username(self.username.as_bytes()) {
            return Err(DeviceListError::InvalidUsername);
        }
        if self.version == 0 {
            return Err(DeviceListError::ZeroVersion);
        }
        if self.device_ids.is_empty() || self.device_ids.len() > MAX_DEVICE_LIST_DEVICES {
            return Err(DeviceListError::DeviceCount);
        }
        if self.device_ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(DeviceListError::NotAscending);
        }
        Ok(())
    }

    /// The account.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The list's version: every new list of an account has a higher one.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the signer made it (Unix ms, informative).
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The listed devices, in increasing order.
    pub fn device_ids(&self) -> &[u64] {
        &self.device_ids
    }

    /// Whether `device_id` is listed.
    pub fn contains(&self, device_id: u64) -> bool {
        self.device_ids.binary_search(&device_id).is_ok()
    }

    /// The next version of this list with `device_id` added (a device
    /// already listed stays once).
    ///
    /// # Errors
    /// `DeviceCount` when the list is full, `ZeroVersion` on overflow.
    pub fn with_device(&self, device_id: u64, timestamp_ms: u64) -> Result<Self, DeviceListError> {
        let mut ids = self.device_ids.clone();
        if !self.contains(device_id) {
            ids.push(device_id);
        }
        DeviceList::new(&self.username, self.next_version()?, timestamp_ms, &ids)
    }

    /// The next version of this list without `device_id`.
    ///
    /// # Errors
    /// `DeviceCount` when no device would be left, `ZeroVersion` on overflow.
    pub fn without_device(
        &self,
        device_id: u64,
        timestamp_ms: u64,
    ) -> Result<Self, DeviceListError> {
        let ids: Vec<u64> = self
            .device_ids
            .iter()
            .copied()
            .filter(|d| *d != device_id)
            .collect();
        DeviceList::new(&self.username, self.next_version()?, timestamp_ms, &ids)
    }

    fn next_version(&self) -> Result<u64, DeviceListError> {
        self.version
            .checked_add(1)
            .ok_or(DeviceListError::ZeroVersion)
    }

    /// The body: every byte of the layout before the signature.
    pub fn to_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.username.len() + 8 * self.device_ids.len());
        out.push(DEVICE_LIST_VERSION);
        // check() bounds both lengths, so the casts cannot truncate.
        out.push(u8::try_from(self.username.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.username.as_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(
            &u16::try_from(self.device_ids.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for id in &self.device_ids {
            out.extend_from_slice(&id.to_be_bytes());
        }
        out
    }

    /// Signs the list with the account's identity.
    pub fn sign(self, identity: &IdentityKeyPair) -> SignedDeviceList {
        let body = self.to_body();
        let signature = identity.sign(&signed_message(&body));
        let mut bytes = body;
        bytes.extend_from_slice(&signature);
        SignedDeviceList { list: self, bytes }
    }
}

/// A device list whose signature verified under an identity key, with the
/// exact bytes that were signed (to store and forward).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDeviceList {
    list: DeviceList,
    bytes: Vec<u8>,
}

impl SignedDeviceList {
    /// Parses `bytes` and verifies the signature under `identity`
    /// (strict Ed25519, SPEC.md §2).
    ///
    /// # Errors
    /// A layout error of [`parse_unverified`], or `BadSignature`.
    pub fn verify(bytes: &[u8], identity: &IdentityKey) -> Result<Self, DeviceListError> {
        let (list, body_len) = parse_unverified(bytes)?;
        let (body, signature) = bytes.split_at(body_len);
        identity
            .verify(&signed_message(body), signature)
            .map_err(|_| DeviceListError::BadSignature)?;
        Ok(SignedDeviceList {
            list,
            bytes: bytes.to_vec(),
        })
    }

    /// [`Self::verify`], and the list must name `username`.
    ///
    /// # Errors
    /// As `verify`, or `WrongUsername`.
    pub fn verify_for(
        bytes: &[u8],
        identity: &IdentityKey,
        username: &str,
    ) -> Result<Self, DeviceListError> {
        let signed = Self::verify(bytes, identity)?;
        if signed.list.username != username {
            return Err(DeviceListError::WrongUsername);
        }
        Ok(signed)
    }

    /// The verified content.
    pub fn list(&self) -> &DeviceList {
        &self.list
    }

    /// The signed bytes (body ‖ signature).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Parses the layout without checking the signature: the list and the
/// length of the body (the signature is the remaining 64 bytes). For
/// callers that verify elsewhere, and for fuzzing the parser.
///
/// # Errors
/// `Truncated`, `TrailingBytes`, `UnsupportedVersion`, `InvalidUsername`,
/// `ZeroVersion`, `DeviceCount`, `NotAscending`.
pub fn parse_unverified(bytes: &[u8]) -> Result<(DeviceList, usize), DeviceListError> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(1)?[0] != DEVICE_LIST_VERSION {
        return Err(DeviceListError::UnsupportedVersion);
    }
    let username_len = usize::from(reader.take(1)?[0]);
    let username = reader.take(username_len)?;
    if !valid_username(username) {
        return Err(DeviceListError::InvalidUsername);
    }
    let username =
        String::from_utf8(username.to_vec()).map_err(|_| DeviceListError::InvalidUsername)?;
    let version = reader.u64()?;
    let timestamp_ms = reader.u64()?;
    let count = usize::from(u16::from_be_bytes([reader.take(1)?[0], reader.take(1)?[0]]));
    if count == 0 || count > MAX_DEVICE_LIST_DEVICES {
        return Err(DeviceListError::DeviceCount);
    }
    let mut device_ids = Vec::with_capacity(count);
    for _ in 0..count {
        device_ids.push(reader.u64()?);
    }
    let body_len = reader.at;
    reader.take(SIGNATURE_LEN)?;
    if reader.at != bytes.len() {
        return Err(DeviceListError::TrailingBytes);
    }
    let list = DeviceList {
        username,
        version,
        timestamp_ms,
        device_ids,
    };
    list.check()?;
    Ok((list, body_len))
}

/// `DEVICE_LIST_LABEL ‖ body`: what the identity signs.
fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(DEVICE_LIST_LABEL.len() + body.len());
    message.extend_from_slice(DEVICE_LIST_LABEL);
    message.extend_from_slice(body);
    message
}

/// 3..=32 bytes of `[a-z0-9_.-]` (SPEC.md §13.1).
fn valid_username(name: &[u8]) -> bool {
    (MIN_DEVICE_LIST_USERNAME_LEN..=MAX_DEVICE_LIST_USERNAME_LEN).contains(&name.len())
        && name
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(b))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DeviceListError> {
        let end = self.at.checked_add(n).ok_or(DeviceListError::Truncated)?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(DeviceListError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn u64(&mut self) -> Result<u64, DeviceListError> {
        let mut out = [0u8; 8];
        out.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(byte: u8) -> IdentityKeyPair {
        IdentityKeyPair::from_seed(&[byte; 32])
    }

    #[test]
    fn signs_and_verifies_with_one_encoding() {
        let id = identity(1);
        let signed = DeviceList::new("alice", 3, 1000, &[9, 2, 5])
            .unwrap()
            .sign(&id);
        let again = SignedDeviceList::verify_for(signed.as_bytes(), id.public(), "alice").unwrap();
        assert_eq!(again.list().device_ids(), &[2, 5, 9]);
        assert_eq!(again.list().version(), 3);
        assert_eq!(
            SignedDeviceList::verify_for(signed.as_bytes(), id.public(), "bob"),
            Err(DeviceListError::WrongUsername)
        );
        assert_eq!(
            SignedDeviceList::verify(signed.as_bytes(), identity(2).public()),
            Err(DeviceListError::BadSignature)
        );
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let id = identity(1);
        let signed = DeviceList::new("alice", 1, 7, &[1, 2]).unwrap().sign(&id);
        for i in 0..signed.as_bytes().len() {
            let mut bytes = signed.as_bytes().to_vec();
            bytes[i] ^= 0x01;
            assert!(
                SignedDeviceList::verify(&bytes, id.public()).is_err(),
                "byte {i}"
            );
        }
        let mut longer = signed.as_bytes().to_vec();
        longer.push(0);
        assert_eq!(
            SignedDeviceList::verify(&longer, id.public()),
            Err(DeviceListError::TrailingBytes)
        );
        for cut in 0..signed.as_bytes().len() {
            assert!(parse_unverified(&signed.as_bytes()[..cut]).is_err());
        }
    }

    #[test]
    fn successors_add_and_remove() {
        let list = DeviceList::new("alice", 1, 0, &[4]).unwrap();
        let two = list.with_device(8, 1).unwrap();
        assert_eq!((two.version(), two.device_ids()), (2, &[4u64, 8][..]));
        let one = two.without_device(4, 2).unwrap();
        assert_eq!((one.version(), one.device_ids()), (3, &[8u64][..]));
        assert_eq!(one.without_device(8, 3), Err(DeviceListError::DeviceCount));
        assert_eq!(
            DeviceList::new("alice", 1, 0, &[3, 3]),
            Err(DeviceListError::NotAscending)
        );
        assert_eq!(
            DeviceList::new("Al", 1, 0, &[3]),
            Err(DeviceListError::InvalidUsername)
        );
        assert_eq!(
            DeviceList::new("alice", 0, 0, &[3]),
            Err(DeviceListError::ZeroVersion)
        );
    }
}
