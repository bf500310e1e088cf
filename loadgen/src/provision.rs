//! Accounts and devices for a load run, created through the transport as
//! any client would (SPEC.md §13): register, confirm with a real TOTP code,
//! enrol a device key with the next TOTP step. The bench server runs with
//! cheap argon2 parameters and rate limits off, so this stays quick.
//!
//! Also logging every device in, on one server or spread over the nodes
//! of a cluster. Not owned here: the login handshake itself (wire.rs) or
//! what the devices then do.

use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use microbot_protocol::transport::{
    ConfirmRegistrationRequest, EnrolDeviceRequest, OneTimePrekey, RegisterRequest, SecondFactor,
    SignedKemPrekey, SignedPrekey, UploadPrekeysRequest, client_frame::Request, response,
    second_factor,
};
use rand::Rng as _;
use zeroize::Zeroizing;

use crate::error::{LoadError, LoadResult};
use crate::wire::{Endpoints, RequestChannel, refusal};

/// An enrolled device: what a load client needs to log in.
#[derive(Clone)]
pub struct DeviceCredentials {
    /// The account.
    pub username: String,
    /// Server-assigned device id.
    pub device_id: u64,
    /// The device's login key.
    pub key: SigningKey,
}

impl std::fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("username", &self.username)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// A random prefix so several runs against one server never collide.
pub fn run_prefix() -> String {
    let mut bytes = [0u8; 4];
    rand::rng().fill_bytes(&mut bytes);
    format!("lg{}", hex::encode(bytes))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// TOTP codes computed from the secret the server returned.
struct Authenticator {
    totp: totp_rs::Totp,
}

impl Authenticator {
    fn from_base32(secret: &str) -> LoadResult<Self> {
        let bytes = totp_rs::Secret::try_from_base32(secret)
            .map_err(|_| LoadError::Unexpected("a base32 TOTP secret"))?
            .as_bytes()
            .to_vec();
        let totp = totp_rs::Builder::new()
            .with_secret(bytes)
            .build()
            .map_err(|e| LoadError::Config(format!("TOTP: {e}")))?;
        Ok(Self { totp })
    }

    fn code_for_step(&self, step: u64) -> String {
        self.totp.generate(step * 30).to_string()
    }
}

/// Registers, confirms and enrols one account with one device on `channel`.
///
/// The confirmation uses the current TOTP step and the enrolment the next
/// one (each step is accepted once), so the server needs a TOTP skew of at
/// least one step, which is its default.
///
/// # Errors
/// The server's refusal of any step.
pub async fn create_device(
    channel: &mut RequestChannel,
    username: &str,
) -> LoadResult<DeviceCredentials> {
    let password = Zeroizing::new(format!("pw-{username}-load"));
    let reply = channel
        .request(Request::Register(RegisterRequest {
            username: username.to_owned(),
            password: password.to_string(),
            bot: false,
        }))
        .await?;
    let response::Result::Register(registration) = reply else {
        return Err(refusal("Register", reply));
    };
    let auth = Authenticator::from_base32(&registration.totp_secret_base32)?;
    let step = now_secs() / 30;
    let reply = channel
        .request(Request::ConfirmRegistration(ConfirmRegistrationRequest {
            username: username.to_owned(),
            password: password.to_string(),
            totp_code: auth.code_for_step(step),
        }))
        .await?;
    if !matches!(reply, response::Result::Ok(_)) {
        return Err(refusal("ConfirmRegistration", reply));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(seed.as_mut());
    let key = SigningKey::from_bytes(&seed);
    let reply = channel
        .request(Request::EnrolDevice(EnrolDeviceRequest {
            username: username.to_owned(),
            password: password.to_string(),
            second_factor: Some(SecondFactor {
                factor: Some(second_factor::Factor::TotpCode(
                    auth.code_for_step(step + 1),
                )),
            }),
            device_public_key: Bytes::copy_from_slice(key.verifying_key().as_bytes()),
            device_name: "loadgen".to_owned(),
        }))
        .await?;
    let response::Result::EnrolDevice(enrolled) = reply else {
        return Err(refusal("EnrolDevice", reply));
    };
    Ok(DeviceCredentials {
        username: username.to_owned(),
        device_id: enrolled.device_id,
        key,
    })
}

/// Creates `count` accounts named `{prefix}-{i}`, one device each, over
/// `concurrency` connections. Devices come back in index order.
///
/// # Errors
/// The first failure of any worker.
pub async fn provision(
    endpoints: &Arc<Endpoints>,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> LoadResult<Vec<DeviceCredentials>> {
    let workers = concurrency.clamp(1, count.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let endpoints = Arc::clone(endpoints);
        let prefix = prefix.to_owned();
        tasks.spawn(async move {
            let mut channel = RequestChannel::open(&endpoints).await?;
            let mut made = Vec::new();
            for i in (w..count).step_by(workers) {
                let device = create_device(&mut channel, &format!("{prefix}-{i}")).await?;
                made.push((i, device));
            }
            channel.connection.close(0u32.into(), b"done");
            Ok::<_, LoadError>(made)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        let made = joined.map_err(|e| LoadError::Connection(e.to_string()))??;
        all.extend(made);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, d)| d).collect())
}

/// What the SDK uploads when it enrols a device (client `prekey_batch`):
/// 100 one-time prekeys beside the signed and last-resort KEM prekeys.
pub const SDK_ONE_TIME_PREKEYS: usize = 100;

/// Uploads, on each logged-in channel, a prekey set of the sizes a real
/// device uploads at enrolment (SPEC.md §12.3: identity key, signed
/// prekey, `one_time` one-time prekeys, a last-resort ML-KEM-768 prekey),
/// random bytes: the server checks lengths, only clients check
/// signatures. For measuring what devices cost the storage.
///
/// # Errors
/// The first refused upload.
pub async fn upload_prekeys(channels: &mut [RequestChannel], one_time: usize) -> LoadResult<()> {
    let mut rng = rand::rng();
    let mut bytes = |n: usize| {
        let mut b = vec![0u8; n];
        rng.fill_bytes(&mut b);
        Bytes::from(b)
    };
    for channel in channels {
        let request = UploadPrekeysRequest {
            identity_key: bytes(32),
            signed_prekey: Some(SignedPrekey {
                id: 1,
                public_key: bytes(32),
                signature: bytes(64),
            }),
            one_time_prekeys: (1..=one_time)
                .map(|id| OneTimePrekey {
                    id: u32::try_from(id).unwrap_or(u32::MAX),
                    public_key: bytes(32),
                })
                .collect(),
            kem_prekeys: Vec::new(),
            last_resort_kem_prekey: Some(SignedKemPrekey {
                id: 1,
                public_key: bytes(1184),
                signature: bytes(64),
            }),
        };
        match channel.request(Request::UploadPrekeys(request)).await? {
            response::Result::Ok(_) => {}
            other => return Err(refusal("upload prekeys", other)),
        }
    }
    Ok(())
}

/// Opens one logged-in channel per device, `concurrency` at a time.
///
/// # Errors
/// The first connection or login failure.
pub async fn login_all(
    endpoints: &Arc<Endpoints>,
    devices: &[DeviceCredentials],
    concurrency: usize,
) -> LoadResult<Vec<RequestChannel>> {
    login_spread(std::slice::from_ref(endpoints), devices, concurrency).await
}

/// The node device `index` logs in to when spread over `nodes` nodes:
/// `index % nodes`.
pub fn node_of(index: usize, nodes: usize) -> usize {
    index % nodes.max(1)
}

/// Opens one logged-in channel per device, device `i` through
/// `targets[node_of(i, targets.len())]` (one entry per cluster node: any node
/// serves any device), `concurrency` at a time. Channels come back in
/// device order.
///
/// # Errors
/// [`LoadError::Invalid`] without targets; the first connection or login
/// failure.
pub async fn login_spread(
    targets: &[Arc<Endpoints>],
    devices: &[DeviceCredentials],
    concurrency: usize,
) -> LoadResult<Vec<RequestChannel>> {
    if targets.is_empty() {
        return Err(LoadError::Invalid("at least one target to log in to"));
    }
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, device) in devices.iter().cloned().enumerate() {
        let endpoints = targets
            .get(node_of(i, targets.len()))
            .map(Arc::clone)
            .ok_or(LoadError::Invalid("no target for a device"))?;
        let semaphore = Arc::clone(&semaphore);
        tasks.spawn(async move {
            let _permit = semaphore
                .acquire_owned()
                .await
                .map_err(|_| LoadError::Invalid("semaphore closed"))?;
            let mut channel = RequestChannel::open(&endpoints).await?;
            channel.login(device.device_id, &device.key).await?;
            Ok::<_, LoadError>((i, channel))
        });
    }
    let mut channels = Vec::with_capacity(devices.len());
    while let Some(joined) = tasks.join_next().await {
        channels.push(joined.map_err(|e| LoadError::Connection(e.to_string()))??);
    }
    channels.sort_by_key(|(i, _)| *i);
    Ok(channels.into_iter().map(|(_, s)| s).collect())
}
