//! Workload (a) through the real client path, crypto included: every
//! device is a `microbot_client::Account` with its own local store; a
//! message is `send_text` of a 256-character text (the SDK pads, encrypts
//! with the Double Ratchet per recipient device, stores it in the outbox,
//! sends it, and the receiver decrypts, stores and acknowledges it).
//!
//! The figure therefore includes both ends' crypto and both ends' local
//! SQLite stores, all on this machine: it shows what an application sees,
//! not what the server can do (pairs.rs measures that).
//!
//! Not owned here: the SDK itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use microbot_client::{
    Account, AccountConfig, ConnectionState, Conversation, Enrolment, Event, Events,
    IdentitySource, KdfParams, SecondFactor, ServerConfig, StoreConfig, Transport,
};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::driver::{DriveConfig, DriveReport};
use crate::error::{LoadError, LoadResult};
use crate::payload::{self, Clock, Stamp};
use crate::stats::Latencies;
use crate::wire::Target;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sdk(e: impl std::fmt::Display) -> LoadError {
    LoadError::Sdk(e.to_string())
}

/// One SDK device with its store directory.
struct SdkDevice {
    account: Account,
    events: Events,
    username: String,
    _dir: tempfile::TempDir,
}

async fn enrol(server: &ServerConfig, username: &str) -> LoadResult<SdkDevice> {
    let password = format!("pw-{username}-load");
    let registration = microbot_client::register(server, username, &password)
        .await
        .map_err(sdk)?;
    let secret = totp_rs::Secret::try_from_base32(registration.totp_secret_base32.as_str())
        .map_err(|_| LoadError::Unexpected("a base32 TOTP secret"))?
        .as_bytes()
        .to_vec();
    let totp = totp_rs::Builder::new()
        .with_secret(secret)
        .build()
        .map_err(|e| LoadError::Config(format!("TOTP: {e}")))?;
    let step = now_secs() / 30;
    microbot_client::confirm_registration(
        server,
        username,
        &password,
        &totp.generate(step * 30).to_string(),
    )
    .await
    .map_err(sdk)?;
    let dir = tempfile::tempdir().map_err(LoadError::io("creating a client store dir"))?;
    let store =
        StoreConfig::new(dir.path().join("client.sqlite3")).with_kdf(KdfParams::new(64, 1, 1));
    let mut config = AccountConfig::default();
    config.delivery_receipts = false;
    config.device_name = "loadgen".to_owned();
    let (account, events) = Account::enrol(
        &store,
        server.clone(),
        Enrolment {
            username: username.to_owned(),
            password: Zeroizing::new(password),
            second_factor: SecondFactor::Totp(totp.generate((step + 1) * 30).to_string()),
            identity: IdentitySource::New,
        },
        config,
    )
    .await
    .map_err(sdk)?;
    Ok(SdkDevice {
        account,
        events,
        username: username.to_owned(),
        _dir: dir,
    })
}

async fn wait_connected(events: &mut Events) -> LoadResult<()> {
    let wait = async {
        while let Some(event) = events.next().await {
            if let Event::Connection(ConnectionState::Connected) = event {
                return Ok(());
            }
            if let Event::Connection(ConnectionState::Refused { reason }) = event {
                return Err(LoadError::Sdk(reason));
            }
        }
        Err(LoadError::Sdk("event stream ended".into()))
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .map_err(|_| LoadError::Timeout("an SDK device connecting"))?
}

struct Shared {
    clock: Clock,
    start_us: u64,
    deadline_us: u64,
    total: u64,
    sent: AtomicU64,
    delivered: AtomicU64,
}

/// Enrols `devices` SDK accounts on `target`, connects them, and runs the
/// pairs workload with `messages` texts per device.
///
/// # Errors
/// Enrolment or connection failures.
pub async fn run_pairs(
    target: &Target,
    transport: Transport,
    devices: usize,
    messages: u64,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    if devices == 0 || !devices.is_multiple_of(2) || config.window == 0 {
        return Err(LoadError::Invalid(
            "sdk pairs: even device count, window >= 1",
        ));
    }
    let server = ServerConfig::new(target.addr, &target.fingerprint)
        .map_err(sdk)?
        .with_transport(transport);
    let prefix = crate::provision::run_prefix();
    let mut all = Vec::with_capacity(devices);
    for i in 0..devices {
        all.push(enrol(&server, &format!("{prefix}-s{i}")).await?);
    }
    for device in &mut all {
        device.account.connect();
        wait_connected(&mut device.events).await?;
    }
    let names: Vec<String> = all.iter().map(|d| d.username.clone()).collect();
    let clock = Clock::new();
    let start_us = clock.now_us() + 20_000;
    let shared = Arc::new(Shared {
        clock,
        start_us,
        deadline_us: start_us + u64::try_from(config.deadline.as_micros()).unwrap_or(u64::MAX / 2),
        total: messages * u64::try_from(devices).unwrap_or(0),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, device) in all.into_iter().enumerate() {
        let partner = names.get(i ^ 1).cloned().unwrap_or_default();
        let shared = Arc::clone(&shared);
        let config = config.clone();
        tasks.spawn(device_loop(
            device, partner, i, devices, messages, config, shared,
        ));
    }
    let mut report = DriveReport {
        devices,
        ..DriveReport::default()
    };
    let mut last_us = start_us;
    while let Some(joined) = tasks.join_next().await {
        let r = joined.map_err(|e| LoadError::Connection(e.to_string()))?;
        report.sent_ok += r.sent;
        report.send_errors += r.failed;
        report.delivered += r.delivered;
        last_us = last_us.max(r.last_us);
        report.latency.merge(r.latency);
    }
    report.expected = report.sent_ok;
    report.elapsed = Duration::from_micros(last_us.saturating_sub(start_us));
    Ok(report)
}

#[derive(Default)]
struct DeviceReport {
    sent: u64,
    failed: u64,
    delivered: u64,
    last_us: u64,
    latency: Latencies,
}

async fn device_loop(
    mut device: SdkDevice,
    partner: String,
    index: usize,
    devices: usize,
    messages: u64,
    config: DriveConfig,
    shared: Arc<Shared>,
) -> DeviceReport {
    let window = Arc::new(Semaphore::new(config.window));
    let account = Arc::new(device.account);
    let sender = {
        let account = Arc::clone(&account);
        let window = Arc::clone(&window);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let interval_us = config
                .rate
                .filter(|r| *r > 0.0)
                .map(|r| ((devices as f64 / r) * 1e6).max(1.0) as u64);
            let offset_us = interval_us.map_or(0, |iv| {
                iv.saturating_mul(u64::try_from(index).unwrap_or(0))
                    / u64::try_from(devices).unwrap_or(1)
            });
            tokio::time::sleep_until(shared.clock.instant_at(shared.start_us).into()).await;
            let conversation = Conversation::Direct(partner);
            let mut failed = 0u64;
            for k in 0..messages {
                let Ok(permit) = window.acquire().await else {
                    break;
                };
                permit.forget();
                let sent_us = match interval_us {
                    Some(iv) => {
                        let at = shared.start_us + offset_us + k * iv;
                        tokio::time::sleep_until(shared.clock.instant_at(at).into()).await;
                        at
                    }
                    None => shared.clock.now_us(),
                };
                let stamp = Stamp {
                    sent_us,
                    seq: k,
                    sender: u32::try_from(index).unwrap_or(u32::MAX),
                };
                let text = payload::encode_text(stamp, config.payload_len);
                if account.send_text(&conversation, &text).is_err() {
                    failed += 1;
                    window.add_permits(1);
                    shared.sent.fetch_add(1, Ordering::AcqRel);
                }
            }
            failed
        })
    };
    let mut r = DeviceReport::default();
    loop {
        let done = shared.sent.load(Ordering::Acquire) >= shared.total
            && shared.delivered.load(Ordering::Acquire) >= shared.sent.load(Ordering::Acquire);
        if done || shared.clock.now_us() > shared.deadline_us {
            break;
        }
        let event =
            match tokio::time::timeout(Duration::from_millis(100), device.events.next()).await {
                Err(_) => continue,
                Ok(Some(event)) => event,
                Ok(None) => break,
            };
        match event {
            Event::Sent { .. } => {
                r.sent += 1;
                window.add_permits(1);
                shared.sent.fetch_add(1, Ordering::AcqRel);
            }
            Event::SendFailed { .. } => {
                r.failed += 1;
                window.add_permits(1);
                shared.sent.fetch_add(1, Ordering::AcqRel);
            }
            Event::Message(m) => {
                let now = shared.clock.now_us();
                if let Some(stamp) = payload::decode_text(&m.text) {
                    r.latency.record_us(now.saturating_sub(stamp.sent_us));
                }
                r.delivered += 1;
                r.last_us = now;
                shared.delivered.fetch_add(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }
    if let Ok(failed) = sender.await {
        r.failed += failed;
    }
    account.disconnect().await;
    r
}
