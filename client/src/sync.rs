//! The background connection of an account (SPEC.md §12.1, §12.4, §12.5):
//! connect, log in, publish prekeys (prekey_upload.rs), fetch every
//! queued envelope, drain the outbox, then follow pushes; on failure, try
//! the server's next address and, once every address failed, reconnect
//! with exponential backoff and jitter (rotation.rs decides which and
//! when).
//!
//! An envelope is acknowledged only after its plaintext, the advanced
//! session and the envelope id are committed in one store transaction, so a
//! crash in between loses nothing; a redelivered envelope is recognised by
//! its id (and a resent message by its content id) and raises no second
//! event. Group state is brought up to date on connect and from pushes.
//! Not owned here: per-device encryption (sessions.rs), receiving one
//! envelope (receive/: the planner in mod.rs, the shell in deliver.rs),
//! sending what is queued (outbox/), groups (groups/).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use microbot_protocol::transport::{
    DeviceInfo, ErrorCode, FetchEnvelopesRequest, ListDevicesRequest, Push, client_frame::Request,
    push, response,
};
use rand::Rng as _;
use tokio::sync::watch;

use crate::account_state::{Inner, Local};
use crate::auth::{self, CLIENT_AGENT};
use crate::error::{Interrupted, StoreError, TransportError};
use crate::events::{ConnectionState, Event};
use crate::groups::{self, GroupId};
use crate::outbox::{Drained, QueuedFile};
use crate::rotation::Rotation;
use crate::transport::Connection;

/// Envelopes asked for per fetch.
const FETCH_PAGE: u32 = 100;

/// How a connection ended.
enum End {
    /// The application stopped the account.
    Stopped,
    /// The server refused this device for good.
    Refused(String),
    /// The connection failed; try again later.
    Lost(String),
}

impl From<TransportError> for End {
    fn from(error: TransportError) -> Self {
        End::Lost(error.to_string())
    }
}

impl From<Interrupted> for End {
    fn from(error: Interrupted) -> Self {
        match error {
            Interrupted::Connection(error) => error.into(),
            Interrupted::Store(error) => error.into(),
        }
    }
}

impl From<StoreError> for End {
    fn from(error: StoreError) -> Self {
        End::Lost(format!("local store: {error}"))
    }
}

/// Runs until stopped: connect, serve, move to the next address or back
/// off, reconnect. `ended` is set before the final `Refused` or `Stopped`
/// event, so an app that calls `connect()` in answer starts afresh.
pub(crate) async fn run(
    inner: Arc<Inner>,
    mut stop: watch::Receiver<bool>,
    ended: Arc<AtomicBool>,
) {
    let mut rotation = Rotation::new(
        &inner.server,
        &inner.me.username,
        inner.me.device_id,
        inner.config.reconnect_min,
        inner.config.reconnect_max,
    );
    loop {
        inner
            .events
            .emit(Event::Connection(ConnectionState::Connecting));
        let end = serve(&inner, &mut stop, &mut rotation).await;
        inner.online.set(None);
        let reason = match end {
            End::Stopped => {
                ended.store(true, Ordering::Release);
                inner
                    .events
                    .emit(Event::Connection(ConnectionState::Stopped));
                return;
            }
            End::Refused(reason) => {
                ended.store(true, Ordering::Release);
                inner
                    .events
                    .emit(Event::Connection(ConnectionState::Refused { reason }));
                return;
            }
            End::Lost(reason) => reason,
        };
        let delay = rotation.failed(&inner.server);
        let wait = if delay.is_zero() {
            delay
        } else {
            with_jitter(delay)
        };
        tracing::debug!(%reason, wait_ms = wait.as_millis(), "disconnected");
        inner
            .events
            .emit(Event::Connection(ConnectionState::Disconnected {
                reason,
                retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            }));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {
                inner.events.emit(Event::Connection(ConnectionState::Stopped));
                return;
            }
        }
    }
}

/// `delay` plus up to 50 % random jitter.
fn with_jitter(delay: Duration) -> Duration {
    let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let jitter = rand::rng().next_u64() % (millis / 2 + 1);
    Duration::from_millis(millis.saturating_add(jitter))
}

/// One connection, from the handshake to its end.
async fn serve(
    inner: &Arc<Inner>,
    stop: &mut watch::Receiver<bool>,
    rotation: &mut Rotation,
) -> End {
    let Some(addr) = rotation.address(&inner.server) else {
        return End::Refused("no server address configured".into());
    };
    let connected = Connection::connect_keeping(
        &inner.server,
        addr,
        CLIENT_AGENT,
        inner.config.connect_timeout,
        // This account's own reconnects spend the address tokens its
        // earlier connections received (no Retry; SPEC.md §12.12).
        Some(&inner.address_tokens),
    )
    .await;
    let (conn, mut pushes) = match connected {
        Ok(connected) => connected,
        Err(TransportError::UnsupportedVersion) => {
            return End::Refused("the server speaks no common protocol version".into());
        }
        Err(error) => return error.into(),
    };
    match auth::login(&conn, inner.me.device_id, &inner.me.device_key).await {
        Ok(_) => {}
        Err(TransportError::Server(error))
            if matches!(
                error.code,
                ErrorCode::UnknownDevice | ErrorCode::DeviceRemoved | ErrorCode::BadSignature
            ) =>
        {
            return End::Refused(error.to_string());
        }
        Err(error) => return error.into(),
    }
    let conn = Arc::new(conn);
    inner.online.set(Some(Arc::clone(&conn)));
    rotation.logged_in();
    if let Err(end) = prepare(inner, &conn).await {
        return end;
    }
    // Connected comes before the backlog it announces (ConnectionState's
    // doc): prekeys are up and the device is listed, so others can reach
    // this device from now on.
    inner.online.set_ready(true);
    inner
        .events
        .emit(Event::Connection(ConnectionState::Connected));
    let first_file = match catch_up(inner, &conn).await {
        Ok(file) => file,
        Err(end) => return end,
    };
    inner
        .events
        .emit(Event::Connection(ConnectionState::CaughtUp));
    // A queued file's upload runs beside pushes (they keep arriving while
    // it goes up); the outbox waits for it, and drains again after it.
    let mut upload: Option<UploadTask<'_>> =
        first_file.map(|file| start_upload(inner, &conn, file));
    loop {
        let uploading = upload.is_some();
        let step = tokio::select! {
            biased;
            _ = stop.changed() => return End::Stopped,
            push = pushes.recv() => match push {
                Some(push) => handle_push(inner, &conn, push).await,
                None => return End::Lost("connection closed".into()),
            },
            done = next_upload(&mut upload) => {
                upload = None;
                done.map_err(End::from)
            }
            _ = inner.outbox_wake.notified(), if !uploading => {
                drain_outbox(inner, &conn).await.map(|file| {
                    upload = file.map(|file| start_upload(inner, &conn, file));
                })
            }
        };
        if let Err(end) = step {
            return end;
        }
    }
}

/// A queued file's upload in progress on this connection.
type UploadTask<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Interrupted>> + Send + 'a>>;

/// Starts the upload of `file` over `conn`.
fn start_upload<'a>(inner: &'a Inner, conn: &'a Connection, file: QueuedFile) -> UploadTask<'a> {
    Box::pin(crate::outbox::upload_file(inner, conn, file))
}

/// The end of the upload in progress; never, while there is none.
async fn next_upload(upload: &mut Option<UploadTask<'_>>) -> Result<(), Interrupted> {
    match upload {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Sends what waits in the outbox (outbox/drain.rs), up to a queued file
/// whose upload must run first; only a connection or store failure ends
/// the connection.
async fn drain_outbox(inner: &Inner, conn: &Connection) -> Result<Option<QueuedFile>, End> {
    Ok(match crate::outbox::drain(inner, conn).await? {
        Drained::Done => None,
        Drained::Upload(file) => Some(*file),
    })
}

/// Fetches one group; only a connection or store problem ends the
/// connection.
async fn refresh_group(local: Local<'_>, conn: &Connection, id: GroupId) -> Result<(), End> {
    Ok(groups::refresh::refresh_or_log(local, conn, id).await?)
}

/// What a fresh login sets up before the device is reachable: prekeys
/// uploaded, the device listed, sealed sending prepared.
async fn prepare(inner: &Inner, conn: &Connection) -> Result<(), End> {
    crate::prekey_upload::ensure_uploaded(&inner.store, &inner.me, inner.config.prekey_batch, conn)
        .await?;
    ensure_listed(inner.local(), conn).await?;
    prepare_sealed_sender(inner, conn).await
}

/// The backlog after login: queued envelopes, missed group changes, then
/// the outbox (up to a queued file to upload, handed back).
async fn catch_up(inner: &Inner, conn: &Connection) -> Result<Option<QueuedFile>, End> {
    let mut after = 0;
    loop {
        let page = match conn
            .request(Request::FetchEnvelopes(FetchEnvelopesRequest {
                after_envelope_id: after,
                limit: FETCH_PAGE,
            }))
            .await?
        {
            response::Result::Envelopes(page) => page,
            _ => {
                return Err(TransportError::UnexpectedResponse {
                    expected: "Envelopes",
                }
                .into());
            }
        };
        for envelope in page.envelopes.iter() {
            after = after.max(envelope.envelope_id);
            crate::receive::deliver(inner, conn, envelope).await?;
        }
        if !page.more || page.envelopes.is_empty() {
            break;
        }
    }
    // Group pushes missed while offline: bring every group we are in up to
    // date, after the queued announcements (so a member who announced
    // leaving is reported as having left, not as removed), before sending.
    let active: Vec<GroupId> = inner
        .store
        .tx(|tx| tx.groups())?
        .into_iter()
        .filter(|(_, record)| record.active)
        .map(|(id, _)| id)
        .collect();
    for id in active {
        refresh_group(inner.local(), conn, id).await?;
    }
    drain_outbox(inner, conn).await
}

async fn handle_push(inner: &Inner, conn: &Connection, push: Push) -> Result<(), End> {
    match push.event {
        Some(push::Event::Envelope(envelope)) => {
            Ok(crate::receive::deliver(inner, conn, &envelope).await?)
        }
        Some(push::Event::PrekeyLowStock(_)) => {
            Ok(
                crate::prekey_upload::refill_if_low(inner.local(), inner.config.prekey_batch, conn)
                    .await?,
            )
        }
        Some(push::Event::GroupChanged(info)) => {
            for event in inner
                .store
                .tx(|tx| groups::state::apply_info(&inner.me, tx, &info))?
            {
                inner.events.emit(event);
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// Registers the account's access key and fetches this device's sender
/// certificate (with the server key sealed envelopes are checked against),
/// SPEC.md §19.6-§19.7. Only a lost connection stops the sync; anything
/// else is logged and sealed sending waits for the next connection.
async fn prepare_sealed_sender(inner: &Inner, conn: &Connection) -> Result<(), End> {
    let registered = crate::sealed::register_access(&inner.store, &inner.config, conn).await;
    let certificate = match registered {
        Ok(()) => crate::sealed::certificate(&inner.store, &inner.me, conn)
            .await
            .map(|_| ()),
        Err(error) => Err(error),
    };
    match certificate {
        Err(error) if error.is_connection_problem() => Err(error.into()),
        Err(error) => {
            tracing::warn!(%error, "sealed sender not available on this connection");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// Signs this device into the account's device list (SPEC.md §20) once
/// its identity key is on the server. Only a lost connection stops the
/// sync; a refused list is logged (sends then refuse too, with the reason).
async fn ensure_listed(local: Local<'_>, conn: &Connection) -> Result<(), End> {
    match crate::device_lists::ensure_listed(local.store, local.me, conn).await {
        Err(crate::device_lists::SignError::Transport(error)) if error.is_connection_problem() => {
            Err(error.into())
        }
        Err(crate::device_lists::SignError::Store(error)) => Err(error.into()),
        Err(error) => {
            tracing::error!(%error, "this device could not sign itself into the device list");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// The account's devices (from the server).
pub(crate) async fn list_devices(conn: &Connection) -> Result<Vec<DeviceInfo>, TransportError> {
    match conn
        .request(Request::ListDevices(ListDevicesRequest {}))
        .await?
    {
        response::Result::DeviceList(list) => Ok(list.devices),
        _ => Err(TransportError::UnexpectedResponse {
            expected: "DeviceList",
        }),
    }
}
