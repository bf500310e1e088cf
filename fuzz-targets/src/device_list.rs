//! Device-list target (SPEC.md §20): `device_list_parse` feeds arbitrary
//! bytes to the signed device list's parser and verifier, as a client does
//! with what a server serves and a server with what a device uploads.
//!
//! Invariants: parsing never panics; a list that parses re-encodes to the
//! very bytes it was read from (one encoding per list); without the
//! identity secret nothing verifies but the fixture's genuine list, byte for
//! byte.

use std::sync::OnceLock;

use microbot_crypto::IdentityKeyPair;
use microbot_crypto::device_list::{DeviceList, SignedDeviceList, parse_unverified};

/// The fixture: an identity and one list it signed.
pub struct DeviceListFixture {
    /// The account's identity.
    pub identity: IdentityKeyPair,
    /// A genuine signed list of "alice" with three devices.
    pub signed: Vec<u8>,
}

/// The fixture, built once from a fixed seed.
pub fn fixture() -> &'static DeviceListFixture {
    static FIXTURE: OnceLock<DeviceListFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let identity = IdentityKeyPair::from_seed(&[5; 32]);
        let signed = DeviceList::new("alice", 3, 1_800_000_000_000, &[1, 7, 42])
            .unwrap_or_else(|e| panic!("fixture list: {e}"))
            .sign(&identity)
            .as_bytes()
            .to_vec();
        DeviceListFixture { identity, signed }
    })
}

/// Parses and verifies `data` as a signed device list.
pub fn device_list_parse(data: &[u8]) {
    let f = fixture();
    if let Ok((list, body_len)) = parse_unverified(data) {
        assert_eq!(
            list.to_body().as_slice(),
            &data[..body_len],
            "a parsed list re-encodes differently"
        );
    }
    if let Ok(verified) = SignedDeviceList::verify_for(data, f.identity.public(), "alice") {
        assert_eq!(
            verified.as_bytes(),
            f.signed.as_slice(),
            "a forged list verified"
        );
    }
}
