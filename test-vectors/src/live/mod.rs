//! The live-server scenario of `microbot-conformance server` (SPEC.md §17.4):
//! a scripted conversation with any server that speaks SPEC.md §12–§13,
//! reporting one named check at a time.
//!
//! It registers two accounts with real TOTP codes, enrols and logs in a
//! device for each, publishes real prekeys, delivers a real end-to-end
//! encrypted message (X3DH + ratchet from microbot-crypto), acknowledges it,
//! tries a group, sends a bad frame, and finally exhausts the registration
//! rate limit (the server may refuse registrations from this address for a while).

pub mod client;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use microbot_crypto::prekeys::{
    KemPreKey, KemPreKeyPublic, LocalPreKeys, OneTimePreKeyPublic, PreKeyBundle, SignedPreKey,
    SignedPreKeyPublic,
};
use microbot_crypto::{IdentityKey, IdentityKeyPair, Session};
use microbot_protocol::transport::{
    self, AckEnvelopesRequest, ChallengeRequest, ConfirmRegistrationRequest, CreateGroupRequest,
    EnrolDeviceRequest, ErrorCode, FetchEnvelopesRequest, FetchPrekeysRequest, Hello, LoginRequest,
    OutgoingEnvelope, RegisterRequest, SecondFactor, SendRequest, UploadPrekeysRequest,
    client_frame::Request, push, response, second_factor,
};

pub use client::{ClientError, RawClient};

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name.
    pub name: &'static str,
    /// `Ok(())` passed; `Err(why)` failed; a skip is `Ok` with `skipped`.
    pub result: Result<(), String>,
    /// The server does not offer this feature (UNSUPPORTED_REQUEST).
    pub skipped: bool,
}

/// The checks so far, each also handed to the caller's callback as it is made.
struct Report<'a>(Vec<Check>, &'a mut (dyn FnMut(&Check) + Send), Duration);

impl Report<'_> {
    fn push(&mut self, check: Check) {
        (self.1)(&check);
        self.0.push(check);
    }

    fn record(&mut self, name: &'static str, result: Result<(), String>) -> bool {
        let ok = result.is_ok();
        self.push(Check {
            name,
            result,
            skipped: false,
        });
        ok
    }
}

fn expect_error(result: &response::Result, code: ErrorCode) -> Result<(), String> {
    match result {
        response::Result::Error(e) if e.code == code as i32 => Ok(()),
        other => Err(format!(
            "expected the error {}, received {}",
            code.as_str_name(),
            words(other)
        )),
    }
}

/// A server's answer in plain words: the error code's name and message, or
/// which kind of answer it was (SPEC.md §12.8).
pub fn words(result: &response::Result) -> String {
    match result {
        response::Result::Error(e) => {
            let code = ErrorCode::try_from(e.code)
                .map(|c| c.as_str_name().to_owned())
                .unwrap_or_else(|_| format!("code {}", e.code));
            let retry = if e.retry_after_ms > 0 {
                format!(" (retry after {} ms)", e.retry_after_ms)
            } else {
                String::new()
            };
            format!(
                "the error {code} {}{retry}",
                crate::describe::shorten(&serde_json::Value::String(e.message.clone()))
            )
        }
        other => {
            let debug = format!("{other:?}");
            let variant = debug.split('(').next().unwrap_or_default();
            format!("a {variant} answer")
        }
    }
}

fn describe(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// RFC 6238 codes from the secret the server returned.
struct Authenticator(totp_rs::Totp);

impl Authenticator {
    fn new(base32: &str) -> Result<Self, String> {
        let secret = totp_rs::Secret::try_from_base32(base32).map_err(describe)?;
        totp_rs::Builder::new()
            .with_secret(secret.as_bytes().to_vec())
            .build()
            .map(Self)
            .map_err(describe)
    }

    /// The code of the current step plus `offset` steps.
    fn code(&self, offset: u64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.0.generate(now + 30 * offset).to_string()
    }
}

struct Member {
    username: String,
    device: SigningKey,
    device_id: u64,
    identity: IdentityKeyPair,
    prekeys: LocalPreKeys,
    client: RawClient,
}

async fn hello(client: &mut RawClient) -> Result<response::Result, ClientError> {
    client
        .request(Request::Hello(Hello {
            versions: vec![1],
            client_agent: "microbot-conformance".into(),
        }))
        .await
}

/// Registers, confirms, enrols and logs in one account on a fresh connection.
async fn onboard(
    addr: SocketAddr,
    fingerprint: &str,
    username: String,
    report: &mut Report<'_>,
    first: bool,
) -> Result<Member, String> {
    let mut client = RawClient::connect_within(addr, fingerprint, report.2)
        .await
        .map_err(describe)?;
    hello(&mut client).await.map_err(describe)?;
    let password = format!("conformance-{username}");
    let registered = client
        .request(Request::Register(RegisterRequest {
            username: username.clone(),
            password: password.clone(),
            bot: false,
        }))
        .await
        .map_err(describe)?;
    let response::Result::Register(registration) = registered else {
        return Err(format!("register: received {}", words(&registered)));
    };
    let uri = &registration.otpauth_uri;
    if first {
        report.record(
            "register returns an otpauth URI (SHA1, 6 digits, 30 s) and recovery codes",
            (uri.starts_with("otpauth://totp/")
                && uri.contains("algorithm=SHA1")
                && uri.contains("digits=6")
                && uri.contains("period=30")
                && !registration.recovery_codes.is_empty())
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "uri {uri:?}, {} recovery codes",
                    registration.recovery_codes.len()
                )
            }),
        );
    }
    let auth = Authenticator::new(&registration.totp_secret_base32)?;
    let device = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let enrol = |code: String| {
        Request::EnrolDevice(EnrolDeviceRequest {
            username: username.clone(),
            password: password.clone(),
            second_factor: Some(SecondFactor {
                factor: Some(second_factor::Factor::TotpCode(code)),
            }),
            device_public_key: device.verifying_key().to_bytes().to_vec().into(),
            device_name: "conformance".into(),
        })
    };
    if first {
        let early = client
            .request(enrol(auth.code(0)))
            .await
            .map_err(describe)?;
        report.record(
            "an unconfirmed account cannot enrol a device",
            expect_error(&early, ErrorCode::AccountInactive),
        );
    }
    let confirm = |code: String| {
        Request::ConfirmRegistration(ConfirmRegistrationRequest {
            username: username.clone(),
            password: password.clone(),
            totp_code: code,
        })
    };
    if first {
        let wrong = format!(
            "{:06}",
            (auth.code(0).parse::<u32>().unwrap_or(0) + 1) % 1_000_000
        );
        let refused = client.request(confirm(wrong)).await.map_err(describe)?;
        report.record(
            "a wrong TOTP code does not confirm",
            expect_error(&refused, ErrorCode::InvalidSecondFactor),
        );
    }
    let confirmed = client
        .request(confirm(auth.code(0)))
        .await
        .map_err(describe)?;
    if !matches!(confirmed, response::Result::Ok(_)) {
        return Err(format!("confirm: received {}", words(&confirmed)));
    }
    // The next step's code is inside the ±1 window and was never used.
    let code = auth.code(1);
    let enrolled = client
        .request(enrol(code.clone()))
        .await
        .map_err(describe)?;
    let response::Result::EnrolDevice(enrolled) = enrolled else {
        return Err(format!("enrol: received {}", words(&enrolled)));
    };
    if first {
        let replay = client.request(enrol(code)).await.map_err(describe)?;
        report.record(
            "a TOTP step accepted once is refused the second time",
            expect_error(&replay, ErrorCode::TotpReplayed),
        );
    }
    let device_id = enrolled.device_id;
    let login = |challenge: &[u8], key: &SigningKey| {
        let mut message = b"Microbot device login v1\x00".to_vec();
        message.extend_from_slice(challenge);
        message.extend_from_slice(&device_id.to_be_bytes());
        Request::Login(LoginRequest {
            device_id,
            signature: key.sign(&message).to_bytes().to_vec().into(),
        })
    };
    let challenge = |result: response::Result| match result {
        response::Result::Challenge(c) => Ok(c.challenge),
        other => Err(format!("challenge: received {}", words(&other))),
    };
    if first {
        let c = challenge(
            client
                .request(Request::Challenge(ChallengeRequest {}))
                .await
                .map_err(describe)?,
        )?;
        let impostor = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let refused = client
            .request(login(&c, &impostor))
            .await
            .map_err(describe)?;
        report.record(
            "a login signed by another key is refused",
            expect_error(&refused, ErrorCode::BadSignature),
        );
    }
    let c = challenge(
        client
            .request(Request::Challenge(ChallengeRequest {}))
            .await
            .map_err(describe)?,
    )?;
    let logged_in = client.request(login(&c, &device)).await.map_err(describe)?;
    if first {
        report.record(
            "a login signed by the device key succeeds",
            matches!(logged_in, response::Result::Login(_))
                .then_some(())
                .ok_or_else(|| format!("received {}", words(&logged_in))),
        );
    }
    let mut rng = rand::rng();
    let identity = IdentityKeyPair::generate(&mut rng);
    let mut prekeys = LocalPreKeys::new();
    prekeys.add_signed(SignedPreKey::generate(&mut rng, &identity, 1));
    prekeys.add_kem(KemPreKey::generate(&mut rng, &identity, 1));
    Ok(Member {
        username,
        device,
        device_id,
        identity,
        prekeys,
        client,
    })
}

async fn upload_prekeys(member: &mut Member) -> Result<response::Result, ClientError> {
    let one_time = member.prekeys.generate_one_time(&mut rand::rng(), 5);
    let signed = member.prekeys.latest_signed().map(|k| k.public().clone());
    let kem = member.prekeys.latest_kem().map(|k| k.public().clone());
    let request = UploadPrekeysRequest {
        identity_key: member.identity.public().to_bytes().to_vec().into(),
        signed_prekey: signed.map(|s| transport::SignedPrekey {
            id: s.id,
            public_key: s.public_key.to_vec().into(),
            signature: s.signature.to_vec().into(),
        }),
        one_time_prekeys: one_time
            .iter()
            .map(|k| transport::OneTimePrekey {
                id: k.id,
                public_key: k.public_key.to_vec().into(),
            })
            .collect(),
        kem_prekeys: Vec::new(),
        last_resort_kem_prekey: kem.map(|k| transport::SignedKemPrekey {
            id: k.id,
            public_key: k.public_key.clone().into(),
            signature: k.signature.to_vec().into(),
        }),
    };
    member.client.request(Request::UploadPrekeys(request)).await
}

fn to_bundle(bundle: &transport::PrekeyBundle) -> Result<PreKeyBundle, String> {
    let bytes32 = |b: &[u8]| <[u8; 32]>::try_from(b).map_err(|_| "key length".to_owned());
    let bytes64 = |b: &[u8]| <[u8; 64]>::try_from(b).map_err(|_| "signature length".to_owned());
    let signed = bundle.signed_prekey.as_ref().ok_or("no signed prekey")?;
    Ok(PreKeyBundle {
        identity: IdentityKey::from_bytes(&bundle.identity_key).map_err(describe)?,
        signed_prekey: SignedPreKeyPublic {
            id: signed.id,
            public_key: bytes32(&signed.public_key)?,
            signature: bytes64(&signed.signature)?,
        },
        one_time_prekey: bundle
            .one_time_prekey
            .as_ref()
            .map(|k| {
                Ok::<_, String>(OneTimePreKeyPublic {
                    id: k.id,
                    public_key: bytes32(&k.public_key)?,
                })
            })
            .transpose()?,
        kem_prekey: bundle
            .kem_prekey
            .as_ref()
            .map(|k| {
                Ok::<_, String>(KemPreKeyPublic {
                    id: k.id,
                    public_key: k.public_key.to_vec(),
                    signature: bytes64(&k.signature)?,
                })
            })
            .transpose()?,
    })
}

/// Runs the scenario against `addr`, pinning the certificate `fingerprint` (hex SHA-256).
pub async fn run(addr: SocketAddr, fingerprint: &str) -> Vec<Check> {
    run_streamed(addr, fingerprint, client::TIMEOUT, &mut |_| {}).await
}

/// [`run`] with `timeout` for every connection and answer, calling
/// `on_check` with every check as soon as it is made, so a command line can
/// print results while the scenario goes on.
pub async fn run_streamed(
    addr: SocketAddr,
    fingerprint: &str,
    timeout: Duration,
    on_check: &mut (dyn FnMut(&Check) + Send),
) -> Vec<Check> {
    let mut report = Report(Vec::new(), on_check, timeout);
    if let Err(why) = scenario(addr, fingerprint, &mut report).await {
        report.record("scenario ran to the end", Err(why));
    }
    report.0
}

async fn scenario(
    addr: SocketAddr,
    fingerprint: &str,
    report: &mut Report<'_>,
) -> Result<(), String> {
    let mut probe = RawClient::connect_within(addr, fingerprint, report.2)
        .await
        .map_err(describe)?;
    let answer = hello(&mut probe).await.map_err(describe)?;
    report.record(
        "hello negotiates version 1 and hands out a 32-byte challenge",
        match &answer {
            response::Result::Hello(h) if h.version == 1 && h.challenge.len() == 32 => Ok(()),
            response::Result::Hello(h) => Err(format!(
                "hello chose version {} with a {}-byte challenge",
                h.version,
                h.challenge.len()
            )),
            other => Err(format!("received {}", words(other))),
        },
    );
    let early = probe
        .request(Request::FetchEnvelopes(FetchEnvelopesRequest {
            after_envelope_id: 0,
            limit: 10,
        }))
        .await
        .map_err(describe)?;
    report.record(
        "requests before login are refused",
        expect_error(&early, ErrorCode::NotAuthenticated),
    );
    let mut other = RawClient::connect_within(addr, fingerprint, report.2)
        .await
        .map_err(describe)?;
    let refused = other
        .request(Request::Hello(Hello {
            versions: vec![99],
            client_agent: "future".into(),
        }))
        .await
        .map_err(describe)?;
    report.record(
        "an unsupported protocol version is refused",
        expect_error(&refused, ErrorCode::UnsupportedVersion),
    );

    let tag: u32 = rand::random();
    let mut alice = onboard(addr, fingerprint, format!("conf_a_{tag:08x}"), report, true).await?;
    let mut bob = onboard(
        addr,
        fingerprint,
        format!("conf_b_{tag:08x}"),
        report,
        false,
    )
    .await?;
    let uploaded = upload_prekeys(&mut bob).await.map_err(describe)?;
    report.record(
        "a device uploads its prekeys",
        matches!(uploaded, response::Result::Ok(_))
            .then_some(())
            .ok_or_else(|| format!("received {}", words(&uploaded))),
    );
    let fetch = Request::FetchPrekeys(FetchPrekeysRequest {
        username: bob.username.clone(),
        device_ids: Vec::new(),
    });
    let first = alice
        .client
        .request(fetch.clone())
        .await
        .map_err(describe)?;
    let second = alice.client.request(fetch).await.map_err(describe)?;
    let (response::Result::PrekeyBundles(first), response::Result::PrekeyBundles(second)) =
        (first, second)
    else {
        return Err("fetching prekeys failed".into());
    };
    let bundle = first.bundles.first().ok_or("no bundle for bob's device")?;
    let one_time_ids = [&first, &second].map(|b| {
        b.bundles
            .first()
            .and_then(|b| b.one_time_prekey.as_ref())
            .map(|k| k.id)
    });
    report.record(
        "each one-time prekey is handed out once",
        (one_time_ids[0].is_some() && one_time_ids[0] != one_time_ids[1])
            .then_some(())
            .ok_or_else(|| format!("one-time prekey ids {one_time_ids:?}")),
    );
    let bundle_device = bundle.device_id;
    let bundle = to_bundle(bundle)?;
    report.record(
        "the fetched bundle's signatures verify",
        bundle.verify().map_err(describe),
    );

    let mut rng = rand::rng();
    let mut session = Session::initiate(&mut rng, &alice.identity, &bundle).map_err(describe)?;
    let plaintext = format!("conformance message {tag}");
    let ciphertext = session
        .encrypt(&mut rng, plaintext.as_bytes())
        .map_err(describe)?;
    let sent = alice
        .client
        .request(Request::Send(SendRequest {
            envelopes: vec![OutgoingEnvelope {
                recipient_device_id: bundle_device,
                ciphertext: ciphertext.into(),
            }],
            complete_accounts: Vec::new(),
        }))
        .await
        .map_err(describe)?;
    report.record(
        "a send is acknowledged",
        matches!(sent, response::Result::Send(_))
            .then_some(())
            .ok_or_else(|| format!("received {}", words(&sent))),
    );
    // Other pushes (a low-stock notice, say) may come first.
    let envelope = loop {
        match bob.client.next_push().await.map_err(describe)?.event {
            Some(push::Event::Envelope(e)) => break e,
            Some(_) => continue,
            None => return Err("empty push".into()),
        }
    };
    let opened = Session::accept(
        &mut rng,
        &bob.identity,
        &mut bob.prekeys,
        &envelope.ciphertext,
    )
    .map(|(_, p)| p)
    .map_err(describe);
    report.record(
        "a connected recipient is pushed the envelope and decrypts it end to end",
        match opened {
            Ok(p) if p == plaintext.as_bytes() && envelope.sender_username == alice.username => {
                Ok(())
            }
            Ok(_) => Err("wrong plaintext or sender".into()),
            Err(e) => Err(e),
        },
    );
    let acked = bob
        .client
        .request(Request::AckEnvelopes(AckEnvelopesRequest {
            envelope_ids: vec![envelope.envelope_id],
        }))
        .await
        .map_err(describe)?;
    let after = bob
        .client
        .request(Request::FetchEnvelopes(FetchEnvelopesRequest {
            after_envelope_id: 0,
            limit: 10,
        }))
        .await
        .map_err(describe)?;
    report.record(
        "an acknowledged envelope is deleted",
        match (&acked, &after) {
            (response::Result::Ack(a), response::Result::Envelopes(e))
                if a.deleted == 1 && e.envelopes.is_empty() =>
            {
                Ok(())
            }
            (response::Result::Ack(a), response::Result::Envelopes(e)) => Err(format!(
                "the ack deleted {} envelopes and {} are still queued",
                a.deleted,
                e.envelopes.len()
            )),
            _ => Err(format!(
                "ack: received {}; fetch: received {}",
                words(&acked),
                words(&after)
            )),
        },
    );

    let group = alice
        .client
        .request(Request::CreateGroup(CreateGroupRequest {
            group_id: rand::random::<[u8; 16]>().to_vec().into(),
            members: vec![bob.username.clone()],
            encrypted_metadata: vec![1, 2, 3].into(),
        }))
        .await
        .map_err(describe)?;
    match &group {
        response::Result::Error(e) if e.code == ErrorCode::UnsupportedRequest as i32 => report
            .push(Check {
                name: "groups: create with a member",
                result: Ok(()),
                skipped: true,
            }),
        response::Result::Group(g) => {
            report.record(
                "groups: create with a member",
                (g.members.iter().any(|m| m.username == bob.username) && g.members.len() == 2)
                    .then_some(())
                    .ok_or_else(|| {
                        let names: Vec<&str> =
                            g.members.iter().map(|m| m.username.as_str()).collect();
                        format!("the group's members are {}", names.join(", "))
                    }),
            );
        }
        other => {
            report.record(
                "groups: create with a member",
                Err(format!("received {}", words(other))),
            );
        }
    }

    // A frame whose length prefix is 2^63 closes that connection only.
    probe
        .send_raw(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
        .await
        .map_err(describe)?;
    let closed = probe.closed_by_server().await;
    let still = RawClient::connect_within(addr, fingerprint, report.2)
        .await
        .map_err(describe);
    let still_ok = match still {
        Ok(mut c) => matches!(hello(&mut c).await, Ok(response::Result::Hello(_))),
        Err(_) => false,
    };
    report.record(
        "an oversize frame closes only that connection",
        (closed && still_ok)
            .then_some(())
            .ok_or_else(|| format!("closed {closed}, others served {still_ok}")),
    );

    // Registrations from one address are rate limited, with a retry hint.
    let mut fresh = RawClient::connect_within(addr, fingerprint, report.2)
        .await
        .map_err(describe)?;
    hello(&mut fresh).await.map_err(describe)?;
    let mut limited = None;
    for attempt in 0..100u32 {
        let request = Request::Register(RegisterRequest {
            username: format!("conf_r_{tag:08x}_{attempt}"),
            password: "conformance-throwaway".into(),
            bot: false,
        });
        match fresh.request(request).await.map_err(describe)? {
            response::Result::Error(e) if e.code == ErrorCode::RateLimited as i32 => {
                limited = Some(e.retry_after_ms);
                break;
            }
            _ => {}
        }
    }
    report.record(
        "repeated registrations are rate limited with a retry hint",
        match limited {
            Some(ms) if ms > 0 => Ok(()),
            Some(_) => Err("ERROR_CODE_RATE_LIMITED came without a retry_after_ms hint".to_owned()),
            None => Err("no ERROR_CODE_RATE_LIMITED after 100 registrations".to_owned()),
        },
    );
    let _ = (&alice.device, alice.device_id, &bob.device);
    Ok(())
}
