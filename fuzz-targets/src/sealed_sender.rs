//! Sealed-sender target (SPEC.md §19): `sealed_sender_open` feeds arbitrary
//! bytes to the recipient's `open` and to the certificate parser.
//!
//! Without the sender's identity secret and a certificate signed by the
//! trusted server key nothing can be produced that opens, so the only input
//! that opens is the genuine envelope of the fixture, byte for byte; a
//! certificate that parses re-encodes to the same bytes.

use std::sync::OnceLock;

use microbot_crypto::IdentityKeyPair;
use microbot_crypto::sealed_sender::certificate::{
    SenderCertificate, ServerPublicKey, ServerSigningKey,
};
use microbot_crypto::sealed_sender::{ContentType, open, seal_with_ephemeral};

/// The recipient's clock in the fixture (the certificate expires an hour later).
pub const NOW_MS: u64 = 1_800_000_000_000;

/// The fixture: the recipient, the server key it trusts, and one genuine
/// envelope with its certificate.
pub struct SealedFixture {
    /// The recipient's identity.
    pub recipient: IdentityKeyPair,
    /// The trusted server key.
    pub trusted: ServerPublicKey,
    /// The sender's certificate.
    pub certificate: Vec<u8>,
    /// A genuine envelope to the recipient.
    pub envelope: Vec<u8>,
}

/// The fixture, built once from fixed seeds.
pub fn fixture() -> &'static SealedFixture {
    static FIXTURE: OnceLock<SealedFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let server = ServerSigningKey::from_seed(1, &[1; 32]);
        let sender = IdentityKeyPair::from_seed(&[2; 32]);
        let recipient = IdentityKeyPair::from_seed(&[3; 32]);
        let certificate = server
            .issue("alice", 1, sender.public(), NOW_MS + 3_600_000)
            .unwrap_or_else(|e| panic!("fixture certificate: {e}"));
        let envelope = seal_with_ephemeral(
            &[4; 32],
            &sender,
            &certificate,
            recipient.public(),
            ContentType::Session,
            b"inner session message",
        )
        .unwrap_or_else(|e| panic!("fixture envelope: {e}"));
        SealedFixture {
            trusted: server.public(),
            recipient,
            certificate: certificate.as_bytes().to_vec(),
            envelope,
        }
    })
}

/// Target `sealed_sender_open`.
pub fn sealed_sender_open(data: &[u8]) {
    let f = fixture();
    if let Ok(certificate) = SenderCertificate::parse(data) {
        assert_eq!(certificate.as_bytes(), data, "a certificate re-encodes");
    }
    if let Ok(opened) = open(&f.recipient, &f.trusted, NOW_MS, data) {
        assert_eq!(
            data,
            f.envelope.as_slice(),
            "only the genuine envelope opens"
        );
        assert_eq!(opened.message, b"inner session message");
    }
}
