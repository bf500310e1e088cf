//! Group commit for PostgreSQL: the two writes every message makes — the
//! sender's enqueue and the recipient's acknowledgement — of all concurrent
//! requests on this node share one transaction, a handful of set-based
//! statements and one WAL flush, instead of a transaction and five round
//! trips each.
//!
//! Writer tasks on the server's runtime (two, taking turns: one collects
//! the next batch once the other holds its rows, and writes it while the
//! other commits) take every job waiting in the channel (up to
//! [`MAX_BATCH`]) and run them together:
//! 1. the device rows of every recipient and every acknowledging device are
//!    locked in id order (as every sender does, so batches of different
//!    nodes never deadlock each other);
//! 2. one `DELETE` of every acknowledged envelope that also lowers the
//!    queue lengths, and the group messages nothing refers to any more;
//! 3. each send is checked in order against the locked rows with the rule
//!    of [`crate::queue_caps`] (a send refused for an unknown or removed
//!    device or a full queue writes nothing and fails alone; the sends
//!    before it count against the ones after it);
//! 4. one `INSERT` of every admitted envelope that also raises the queue
//!    lengths, with ids drawn from the table's sequence (after the locks)
//!    in the batch's order, so each device's envelope ids still increase in
//!    commit order.
//!
//! Statements that do not wait for each other's answers go out together
//! (tokio-postgres pipelines them on the connection), `BEGIN` and `COMMIT`
//! included: a batch costs three round trips ([`write_batch`]).
//!
//! The batch commits with `synchronous_commit = off`, so its row locks go
//! as soon as the commit record is written, not after the WAL flush: the
//! other writer (of this node or another) locks the same devices and
//! writes its batch while this one's flush is in flight. Then, still before
//! any caller learns its result, the writer commits a marker transaction
//! (a transactional logical-decoding message, [`FlushWait::commit`]) with
//! `synchronous_commit = on`: its commit returns only once the WAL is
//! flushed up to its own commit record, which lies after the batch's, and
//! PostgreSQL flushes the WAL in order. So an answered send is durable
//! (SPEC.md §12.7). Other sessions may read the batch before that flush (a
//! recipient may fetch a message whose sender has no answer yet); after a
//! crash in between it is gone and the unanswered sender sends it again.
//! A database error fails every job of the batch (if the marker fails, the
//! batch may be stored: its senders get an error and send again, which the
//! recipients' clients recognise as a repeated message id); a deadlock or
//! serialisation failure reruns the whole batch. No job waits for a timer:
//! a batch is whatever arrived while the previous one was being taken.
//!
//! Not owned here: the queue rule (queue_caps.rs), group fan-out
//! (groups.rs), reads (postgres.rs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::db::Db;
use super::pool::Pool;
use super::{ATTEMPTS, PgError, PgResult, col, count, net_id, sql_id, sql_time};
use crate::queue_caps::{QueueTally, Refusal, share_may_matter};
use crate::storage::{OutgoingEnvelope, OwnedSendMeta, StorageError, StorageFuture, StorageResult};

/// Most jobs in one transaction.
pub(super) const MAX_BATCH: usize = 512;
/// Writer tasks (and so connections) of one node.
const WRITERS: usize = 2;
/// Jobs waiting for the writers before senders wait for room.
const CHANNEL: usize = 4 * MAX_BATCH;

/// One send or acknowledgement waiting for the writer.
enum HotJob {
    Enqueue {
        meta: OwnedSendMeta,
        envelopes: Vec<OutgoingEnvelope>,
        reply: oneshot::Sender<StorageResult<Vec<u64>>>,
    },
    Ack {
        device_id: u64,
        ids: Vec<u64>,
        reply: oneshot::Sender<StorageResult<u32>>,
    },
}

/// What one job of a committed batch gets back.
enum Outcome {
    Enqueued(StorageResult<Vec<u64>>),
    Acked(u32),
}

/// The channel to the writer task.
pub(super) struct HotWriter {
    jobs: mpsc::Sender<HotJob>,
}

impl HotWriter {
    /// Starts the writer tasks on the calling runtime (the server's),
    /// writing through `pool`; they end when this is dropped.
    pub(super) fn start(pool: Arc<Pool>, flush: FlushWait) -> Self {
        let (jobs, queue) = mpsc::channel(CHANNEL);
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(Arc::clone(&queue), Arc::clone(&pool), flush));
        }
        Self { jobs }
    }

    /// Stores `envelopes` durably with the next batch; resolves with their
    /// ids in order.
    pub(super) fn enqueue(
        &self,
        meta: OwnedSendMeta,
        envelopes: Vec<OutgoingEnvelope>,
    ) -> StorageFuture<Vec<u64>> {
        let jobs = self.jobs.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            jobs.send(HotJob::Enqueue {
                meta,
                envelopes,
                reply,
            })
            .await
            .map_err(|_| closed())?;
            answer.await.map_err(|_| closed())?
        })
    }

    /// Deletes the listed envelopes of `device_id` with the next batch;
    /// resolves with how many existed.
    pub(super) fn ack(&self, device_id: u64, ids: Vec<u64>) -> StorageFuture<u32> {
        let jobs = self.jobs.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            jobs.send(HotJob::Ack {
                device_id,
                ids,
                reply,
            })
            .await
            .map_err(|_| closed())?;
            answer.await.map_err(|_| closed())?
        })
    }
}

fn closed() -> StorageError {
    StorageError::Database("the PostgreSQL writer has stopped".to_owned())
}

/// A writer task: takes what is waiting, commits it, and again, until
/// every sender is gone. While one writer commits, the other takes the
/// jobs that arrived meanwhile and starts its own batch (waiting, where
/// the two touch the same device, for the first one's row locks).
async fn write_batches(
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<HotJob>>>,
    pool: Arc<Pool>,
    flush: FlushWait,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let mut turn = queue.lock().await;
        let taken = turn.recv_many(&mut batch, MAX_BATCH).await;
        if taken == 0 {
            break;
        }
        let outcome = commit_batch(&pool, &batch, flush, Some(turn)).await;
        reply(batch.drain(..), outcome);
    }
}

/// The right to take the next jobs, held by one writer from taking its
/// batch until that batch holds its device rows and has drawn its ids.
/// So a later batch locks the devices it shares with an earlier one only
/// after it, waits for its commit, and draws larger ids: the jobs of one
/// connection, queued in request order (a connection pipelines its sends,
/// dispatch.rs), are stored in that order, whichever writer takes them.
/// (A batch rerun after a deadlock, which only batches of different nodes
/// can cause, has given up its turn and may come after a later one.)
type Turn<'a> = tokio::sync::MutexGuard<'a, mpsc::Receiver<HotJob>>;

/// A pooled connection with its statement cache; the batch's transaction
/// is begun and ended by hand so `BEGIN` and `COMMIT` ride in the
/// pipelines of the statements next to them.
type Conn<'a> = Db<'a, tokio_postgres::Client>;

/// How a batch waits for the WAL flush that makes it durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FlushWait {
    /// The batch commits with `synchronous_commit = off`, then a marker
    /// transaction that waits for the flush, in the same round trip: the
    /// batch's row locks go before the flush (the module doc says why the
    /// answer still means durable).
    AfterCommit,
    /// The batch's own commit waits for the flush, holding its row locks:
    /// for a role that may not call `pg_logical_emit_message`.
    InCommit,
}

impl FlushWait {
    /// `AfterCommit` when the connected role may call the marker's
    /// function (any role can, unless an administrator revoked it).
    ///
    /// # Errors
    /// The query failed.
    pub(super) async fn available(client: &tokio_postgres::Client) -> PgResult<Self> {
        let row = client
            .query_one(
                "SELECT has_function_privilege(\
                 'pg_logical_emit_message(boolean, text, text)', 'execute')",
                &[],
            )
            .await?;
        Ok(if col::<bool>(&row, 0)? {
            Self::AfterCommit
        } else {
            Self::InCommit
        })
    }

    /// Opens the batch's transaction, without sequential scans.
    ///
    /// Every statement of the batch is a key lookup, but `envelopes` is a
    /// queue: rows come and go within milliseconds, so the table is nearly
    /// empty whenever it is planned and grows dead rows until it is vacuumed.
    /// PostgreSQL plans a prepared statement once for good after five runs;
    /// planned on a small table, the acknowledgement `DELETE` became a hash
    /// join over a sequential scan of every page, live or dead, in every batch
    /// (auto_explain in a saturated run: 65 of 200 samples of the writers
    /// inside it; throughput halved). Without sequential scans the planner
    /// picks the primary-key lookups.
    fn begin(self) -> &'static str {
        match self {
            Self::AfterCommit => {
                "BEGIN; SET LOCAL synchronous_commit = off; SET LOCAL enable_seqscan = off"
            }
            Self::InCommit => "BEGIN; SET LOCAL enable_seqscan = off",
        }
    }

    /// Commits the batch and returns once it is durable. With
    /// `AfterCommit`, the marker is a transactional logical-decoding
    /// message: it writes a WAL record under a transaction id, so its
    /// commit (with the session's `synchronous_commit = on`) returns once
    /// the WAL is flushed past it, and so past the batch. Nothing reads the
    /// message unless a logical replication slot asks for messages. A
    /// failed `COMMIT` stops the rest of the string.
    fn commit(self) -> &'static str {
        match self {
            Self::AfterCommit => {
                "COMMIT; BEGIN; SELECT pg_logical_emit_message(true, 'microbot.durable', ''); COMMIT"
            }
            Self::InCommit => "COMMIT",
        }
    }
}

/// Locks the device rows the batch writes, in id order.
const LOCK_DEVICES: &str = "SELECT id, removed, account_id, queue_len FROM devices \
                            WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// Draws `$1` envelope ids from the table's sequence.
const DRAW_IDS: &str = "SELECT nextval(pg_get_serial_sequence('envelopes', 'id')) \
                        FROM generate_series(1, $1::bigint)";

/// Deletes acknowledged envelopes and lowers their queue lengths by exactly
/// what was removed.
const DELETE_ACKED: &str = "WITH gone AS (DELETE FROM envelopes e \
     USING unnest($1::bigint[], $2::bigint[]) AS u(d, i) \
     WHERE e.device_id = u.d AND e.id = u.i \
     RETURNING e.device_id, e.id, e.group_message_id), \
     n AS (SELECT device_id, COUNT(*) AS n FROM gone GROUP BY device_id), \
     shrunk AS (UPDATE devices d SET queue_len = GREATEST(d.queue_len - n.n, 0) \
     FROM n WHERE d.id = n.device_id) \
     SELECT device_id, id, group_message_id FROM gone";

/// Inserts envelopes (columns as arrays) and raises their queue lengths.
const INSERT_ENVELOPES: &str = "WITH stored AS (INSERT INTO envelopes (id, device_id, sender_username, \
     sender_device_id, server_timestamp_ms, expires_at_ms, ciphertext) \
     OVERRIDING SYSTEM VALUE \
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], \
     $5::bigint[], $6::bigint[], $7::bytea[]) RETURNING device_id), \
     n AS (SELECT device_id, COUNT(*) AS n FROM stored GROUP BY device_id) \
     UPDATE devices d SET queue_len = d.queue_len + n.n FROM n WHERE d.id = n.device_id";

/// Where a batch failed: before its `COMMIT` was sent (nothing stored; a
/// deadlock may be retried), or in the round trip of the commit and the
/// flush (the batch may be stored: never retried).
enum Failure {
    BeforeCommit(PgError),
    AtCommit(PgError),
}

/// Runs the batch in one transaction, rerunning it on a deadlock or
/// serialisation failure, and returns once it is durable.
async fn commit_batch(
    pool: &Pool,
    batch: &[HotJob],
    flush: FlushWait,
    mut turn: Option<Turn<'_>>,
) -> PgResult<Vec<Outcome>> {
    let mut pooled = pool.get().await?;
    // Until the transaction is over, dropping the client closes it.
    pooled.open_transaction();
    let (client, cache) = pooled.parts()?;
    let conn = Conn {
        client: &*client,
        cache,
    };
    let mut attempt = 1;
    let outcome = loop {
        match write_batch(&conn, batch, flush, &mut turn).await {
            Ok(outcomes) => break Ok(outcomes),
            Err(Failure::BeforeCommit(e)) if e.retryable() && attempt < ATTEMPTS => {
                conn.client.batch_execute("ROLLBACK").await?;
                attempt += 1;
            }
            Err(Failure::BeforeCommit(e) | Failure::AtCommit(e)) => break Err(e),
        }
    };
    if outcome.is_ok() {
        pooled.transaction_ended();
    }
    outcome
}

/// Hands every job its outcome (the caller may have gone: the write stands,
/// as it would had the answer been lost on the network).
fn reply(jobs: impl Iterator<Item = HotJob>, outcome: PgResult<Vec<Outcome>>) {
    match outcome {
        Ok(outcomes) => {
            for (job, outcome) in jobs.zip(outcomes) {
                match (job, outcome) {
                    (HotJob::Enqueue { reply, .. }, Outcome::Enqueued(result)) => {
                        let _ = reply.send(result);
                    }
                    (HotJob::Ack { reply, .. }, Outcome::Acked(n)) => {
                        let _ = reply.send(Ok(n));
                    }
                    (HotJob::Enqueue { reply, .. }, Outcome::Acked(_)) => {
                        let _ = reply.send(Err(mismatch()));
                    }
                    (HotJob::Ack { reply, .. }, Outcome::Enqueued(_)) => {
                        let _ = reply.send(Err(mismatch()));
                    }
                }
            }
        }
        Err(e) => {
            let e = e.into_storage();
            for job in jobs {
                match job {
                    HotJob::Enqueue { reply, .. } => {
                        let _ = reply.send(Err(e.clone()));
                    }
                    HotJob::Ack { reply, .. } => {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

fn mismatch() -> StorageError {
    StorageError::Database("batch outcome out of order".to_owned())
}

/// A locked device row.
struct DeviceRow {
    removed: bool,
    account_id: i64,
    queued: u32,
}

/// The batch's transaction in three round trips (four when a sender share
/// has to be read), pipelined on the connection (tokio-postgres sends
/// requests polled together without waiting for each answer):
/// 1. `BEGIN`, the device locks, the acknowledged envelopes' `DELETE` and
///    the id draw, in that order: PostgreSQL runs them one after the other,
///    so the ids are drawn only once the rows are locked (a transaction of
///    another node that inserts for one of these devices waits for this
///    commit and then draws larger ids, so each device's ids increase in
///    commit order; a fetch resumes after the last id it saw);
/// 2. (the sends are checked against the locked rows, here);
/// 3. the `INSERT` with [`FlushWait::commit`]: if the insert fails, the
///    `COMMIT` of the aborted transaction rolls it back.
async fn write_batch(
    conn: &Conn<'_>,
    batch: &[HotJob],
    flush: FlushWait,
    turn: &mut Option<Turn<'_>>,
) -> Result<Vec<Outcome>, Failure> {
    let before = Failure::BeforeCommit;
    let envelopes: usize = batch
        .iter()
        .map(|job| match job {
            HotJob::Enqueue { envelopes, .. } => envelopes.len(),
            HotJob::Ack { .. } => 0,
        })
        .sum();
    conn.prepare(&[LOCK_DEVICES, DELETE_ACKED, DRAW_IDS, INSERT_ENVELOPES])
        .await
        .map_err(before)?;
    // Every answer is awaited and the first error in pipeline order is the
    // one that counts: once a statement fails (a deadlock, say), the ones
    // after it fail with "current transaction is aborted", and `try_join!`
    // (which polls from a rotating start) could report one of those instead
    // of the retryable cause.
    let (begun, devices, acked, ids) = tokio::join!(
        conn.client.batch_execute(flush.begin()),
        lock_devices(conn, batch),
        delete_acknowledged(conn, batch),
        draw_ids(conn, envelopes),
    );
    // Rows locked and ids drawn (or the batch failed): the next writer
    // may take its jobs.
    drop(turn.take());
    begun.map_err(|e| before(e.into()))?;
    let devices = devices.map_err(before)?;
    let acked = acked.map_err(before)?;
    let ids = ids.map_err(before)?;
    let mut outcomes: Vec<Option<Outcome>> = batch.iter().map(|_| None).collect();
    // Ids of sends refused here go unused: gaps are harmless.
    let admitted = admit_sends(conn, batch, &devices, &mut outcomes)
        .await
        .map_err(before)?;
    let (inserted, committed) = tokio::join!(
        insert_envelopes(conn, batch, &admitted, &ids),
        conn.client.batch_execute(flush.commit()),
    );
    let per_send = inserted.map_err(before)?;
    committed.map_err(|e| Failure::AtCommit(e.into()))?;
    for (index, ids) in admitted.into_iter().zip(per_send) {
        outcomes[index] = Some(Outcome::Enqueued(Ok(ids)));
    }
    for (index, acked) in acked {
        outcomes[index] = Some(Outcome::Acked(acked));
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| Failure::AtCommit(PgError::Storage(mismatch()))))
        .collect()
}

/// Locks the device rows the batch writes, in id order.
async fn lock_devices(conn: &Conn<'_>, batch: &[HotJob]) -> PgResult<HashMap<u64, DeviceRow>> {
    let mut ids: Vec<i64> = batch
        .iter()
        .flat_map(|job| -> Box<dyn Iterator<Item = u64> + '_> {
            match job {
                HotJob::Enqueue { envelopes, .. } => {
                    Box::new(envelopes.iter().map(|e| e.recipient_device_id))
                }
                HotJob::Ack { device_id, .. } => Box::new(std::iter::once(*device_id)),
            }
        })
        .map(sql_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = conn.query(LOCK_DEVICES, &[&ids]).await?;
    let mut devices = HashMap::with_capacity(rows.len());
    for r in &rows {
        devices.insert(
            net_id(col(r, 0)?),
            DeviceRow {
                removed: col(r, 1)?,
                account_id: col(r, 2)?,
                queued: count(col(r, 3)?),
            },
        );
    }
    Ok(devices)
}

/// Checks every send in order and returns the indexes of those admitted;
/// a refused one gets its error in `outcomes`.
async fn admit_sends(
    conn: &Conn<'_>,
    batch: &[HotJob],
    devices: &HashMap<u64, DeviceRow>,
    outcomes: &mut [Option<Outcome>],
) -> PgResult<Vec<usize>> {
    // Unknown and removed recipients first: such a send fails whole.
    let mut sends = Vec::new();
    for (index, job) in batch.iter().enumerate() {
        let HotJob::Enqueue {
            meta, envelopes, ..
        } = job
        else {
            continue;
        };
        match recipients_exist(envelopes, devices) {
            Ok(()) => sends.push((index, meta, envelopes)),
            Err(e) => outcomes[index] = Some(Outcome::Enqueued(Err(e))),
        }
    }
    let mut tally = QueueTally::default();
    let mut adding: HashMap<u64, u32> = HashMap::new();
    for (device, row) in devices {
        tally.set_queued(*device, row.queued);
    }
    for (_, _, envelopes) in &sends {
        for e in envelopes.iter() {
            let n = adding.entry(e.recipient_device_id).or_insert(0);
            *n = n.saturating_add(1);
        }
    }
    let senders = sender_accounts(conn, &sends, devices, &adding).await?;
    read_shares(conn, &sends, devices, &adding, &senders, &mut tally).await?;
    let mut admitted = Vec::with_capacity(sends.len());
    for (index, meta, envelopes) in sends {
        let recipients: Vec<u64> = envelopes.iter().map(|e| e.recipient_device_id).collect();
        let sender_account = senders.get(&meta.sender_device_id).copied();
        let own = |device: u64| {
            sender_account.is_some() && devices.get(&device).map(|d| d.account_id) == sender_account
        };
        match tally.admit(
            &meta.sender_username,
            &recipients,
            own,
            meta.borrowed().caps(),
        ) {
            Ok(()) => admitted.push(index),
            Err(Refusal::Full(full)) => {
                outcomes[index] = Some(Outcome::Enqueued(Err(StorageError::QueueFull(full))));
            }
            Err(Refusal::ShareUnknown(device)) => {
                return Err(PgError::Storage(StorageError::Database(format!(
                    "queue share of device {device} was not read"
                ))));
            }
        }
    }
    Ok(admitted)
}

/// The first recipient that does not exist or was removed, as the error
/// the send fails with.
fn recipients_exist(
    envelopes: &[OutgoingEnvelope],
    devices: &HashMap<u64, DeviceRow>,
) -> Result<(), StorageError> {
    for e in envelopes {
        let removed = devices.get(&e.recipient_device_id).map(|row| row.removed);
        crate::storage::device_rules::check_recipient(e.recipient_device_id, removed)?;
    }
    Ok(())
}

type SendJob<'a> = (usize, &'a OwnedSendMeta, &'a Vec<OutgoingEnvelope>);

/// Whether any recipient of this send may need the sender's share.
fn share_needed(
    envelopes: &[OutgoingEnvelope],
    meta: &OwnedSendMeta,
    devices: &HashMap<u64, DeviceRow>,
    adding: &HashMap<u64, u32>,
) -> Vec<u64> {
    let caps = meta.borrowed().caps();
    envelopes
        .iter()
        .map(|e| e.recipient_device_id)
        .filter(|d| {
            let queued = devices.get(d).map_or(0, |r| r.queued);
            share_may_matter(queued, adding.get(d).copied().unwrap_or(0), caps)
        })
        .collect()
}

/// The accounts of the sending devices, read only when some share may
/// matter (a device of the sender's own account is exempt from it).
async fn sender_accounts(
    conn: &Conn<'_>,
    sends: &[SendJob<'_>],
    devices: &HashMap<u64, DeviceRow>,
    adding: &HashMap<u64, u32>,
) -> PgResult<HashMap<u64, i64>> {
    let mut wanted: Vec<i64> = sends
        .iter()
        .filter(|(_, meta, envelopes)| !share_needed(envelopes, meta, devices, adding).is_empty())
        .map(|(_, meta, _)| sql_id(meta.sender_device_id))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = conn
        .query(
            "SELECT id, account_id FROM devices WHERE id = ANY($1)",
            &[&wanted],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((net_id(col(r, 0)?), col(r, 1)?)))
        .collect()
}

/// Reads the senders' unexpired shares of the queues where they may matter
/// (devices of another account whose queue the batch may take past the
/// share cap) into `tally`.
async fn read_shares(
    conn: &Conn<'_>,
    sends: &[SendJob<'_>],
    devices: &HashMap<u64, DeviceRow>,
    adding: &HashMap<u64, u32>,
    senders: &HashMap<u64, i64>,
    tally: &mut QueueTally,
) -> PgResult<()> {
    let mut pairs: HashSet<(i64, String)> = HashSet::new();
    let mut now = 0u64;
    for (_, meta, envelopes) in sends {
        let sender_account = senders.get(&meta.sender_device_id).copied();
        for device in share_needed(envelopes, meta, devices, adding) {
            let own = sender_account.is_some()
                && devices.get(&device).map(|d| d.account_id) == sender_account;
            if !own {
                pairs.insert((sql_id(device), meta.sender_username.clone()));
                now = now.max(meta.now_ms);
            }
        }
    }
    if pairs.is_empty() {
        return Ok(());
    }
    let (ids, names): (Vec<i64>, Vec<String>) = pairs.into_iter().unzip();
    let rows = conn
        .query(
            "SELECT u.d, u.s, (SELECT COUNT(*) FROM envelopes e WHERE e.device_id = u.d \
             AND e.sender_username = u.s AND e.expires_at_ms > $3) \
             FROM unnest($1::bigint[], $2::text[]) AS u(d, s)",
            &[&ids, &names, &sql_time(now)],
        )
        .await?;
    for r in &rows {
        let name: String = col(r, 1)?;
        tally.set_share(net_id(col(r, 0)?), &name, count(col(r, 2)?));
    }
    Ok(())
}

/// `n` envelope ids from the table's sequence, ascending.
async fn draw_ids(conn: &Conn<'_>, n: usize) -> PgResult<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut ids: Vec<i64> = conn
        .query(DRAW_IDS, &[&i64::try_from(n).unwrap_or(i64::MAX)])
        .await?
        .iter()
        .map(|r| col(r, 0))
        .collect::<PgResult<_>>()?;
    if ids.len() != n {
        return Err(PgError::Storage(StorageError::Database(
            "envelope ids were not drawn".to_owned(),
        )));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Inserts the admitted sends' envelopes, with `ids` handed out in the
/// batch's order, and counts them in their queues, in one statement;
/// returns each send's ids in its envelopes' order.
async fn insert_envelopes(
    conn: &Conn<'_>,
    batch: &[HotJob],
    admitted: &[usize],
    ids: &[i64],
) -> PgResult<Vec<Vec<u64>>> {
    let sends: Vec<(&OwnedSendMeta, &Vec<OutgoingEnvelope>)> = admitted
        .iter()
        .filter_map(|i| match &batch[*i] {
            HotJob::Enqueue {
                meta, envelopes, ..
            } => Some((meta, envelopes)),
            HotJob::Ack { .. } => None,
        })
        .collect();
    let total: usize = sends.iter().map(|(_, e)| e.len()).sum();
    if total == 0 {
        return Ok(sends.iter().map(|_| Vec::new()).collect());
    }
    if ids.len() < total {
        return Err(PgError::Storage(StorageError::Database(
            "fewer envelope ids than envelopes".to_owned(),
        )));
    }
    let mut columns = Columns::with_capacity(total);
    let mut per_send = Vec::with_capacity(sends.len());
    let mut next = ids.iter();
    for (meta, envelopes) in &sends {
        let mut mine = Vec::with_capacity(envelopes.len());
        for e in envelopes.iter() {
            let id = next.next().copied().unwrap_or(-1);
            columns.push(id, meta, e);
            mine.push(net_id(id));
        }
        per_send.push(mine);
    }
    conn.execute(
        INSERT_ENVELOPES,
        &[
            &columns.id,
            &columns.device,
            &columns.sender,
            &columns.sender_device,
            &columns.timestamp,
            &columns.expires,
            &columns.ciphertext,
        ],
    )
    .await?;
    Ok(per_send)
}

/// The envelope rows of one `INSERT`, column by column.
struct Columns<'a> {
    id: Vec<i64>,
    device: Vec<i64>,
    sender: Vec<&'a str>,
    sender_device: Vec<i64>,
    timestamp: Vec<i64>,
    expires: Vec<i64>,
    ciphertext: Vec<&'a [u8]>,
}

impl<'a> Columns<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            id: Vec::with_capacity(n),
            device: Vec::with_capacity(n),
            sender: Vec::with_capacity(n),
            sender_device: Vec::with_capacity(n),
            timestamp: Vec::with_capacity(n),
            expires: Vec::with_capacity(n),
            ciphertext: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, id: i64, meta: &'a OwnedSendMeta, envelope: &'a OutgoingEnvelope) {
        self.id.push(id);
        self.device.push(sql_id(envelope.recipient_device_id));
        self.sender.push(&meta.sender_username);
        self.sender_device.push(sql_id(meta.sender_device_id));
        self.timestamp.push(sql_time(meta.now_ms));
        self.expires.push(sql_time(meta.expires_at_ms));
        self.ciphertext.push(envelope.ciphertext.as_ref());
    }
}

/// Deletes every acknowledged envelope of the batch; returns, per ack job,
/// how many of its ids existed (an id listed twice counts once, for the
/// first job that listed it).
async fn delete_acknowledged(conn: &Conn<'_>, batch: &[HotJob]) -> PgResult<Vec<(usize, u32)>> {
    let mut devices = Vec::new();
    let mut ids = Vec::new();
    for job in batch {
        if let HotJob::Ack {
            device_id,
            ids: mine,
            ..
        } = job
        {
            for id in mine {
                devices.push(sql_id(*device_id));
                ids.push(sql_id(*id));
            }
        }
    }
    let mut gone: HashSet<(u64, u64)> = HashSet::new();
    if !ids.is_empty() {
        // One statement: each queue length drops by exactly what the
        // DELETE removed from it.
        let rows = conn.query(DELETE_ACKED, &[&devices, &ids]).await?;
        let mut group_messages = Vec::new();
        for r in &rows {
            gone.insert((net_id(col(r, 0)?), net_id(col(r, 1)?)));
            if let Some(message) = col::<Option<i64>>(r, 2)? {
                group_messages.push(message);
            }
        }
        // A group message is stored once; it goes with its last reference.
        if !group_messages.is_empty() {
            conn.execute(
                "DELETE FROM group_messages g WHERE g.id = ANY($1) AND NOT EXISTS \
                 (SELECT 1 FROM envelopes e WHERE e.group_message_id = g.id)",
                &[&group_messages],
            )
            .await?;
        }
    }
    let mut acked = Vec::new();
    for (index, job) in batch.iter().enumerate() {
        if let HotJob::Ack { device_id, ids, .. } = job {
            let n = ids
                .iter()
                .filter(|id| gone.remove(&(*device_id, **id)))
                .count();
            acked.push((index, u32::try_from(n).unwrap_or(u32::MAX)));
        }
    }
    Ok(acked)
}

#[cfg(test)]
mod tests {
    use super::{DELETE_ACKED, FlushWait, INSERT_ENVELOPES, LOCK_DEVICES};

    /// The plans PostgreSQL caches for good, built on a table as empty as
    /// a drained queue.
    async fn generic_plans(client: &tokio_postgres::Client) -> String {
        client
            .batch_execute("DEALLOCATE ALL; SET plan_cache_mode = force_generic_plan")
            .await
            .unwrap();
        let mut plans = String::new();
        for (name, sql, args) in [
            ("lock", LOCK_DEVICES, "('{1}')"),
            ("gone", DELETE_ACKED, "('{1}', '{1}')"),
            (
                "stored",
                INSERT_ENVELOPES,
                "('{1}', '{1}', '{a}', '{1}', '{0}', '{9}', '{\"\\\\x00\"}')",
            ),
        ] {
            client
                .batch_execute(&format!("PREPARE {name} AS {sql}"))
                .await
                .unwrap();
            for row in client
                .simple_query(&format!("EXPLAIN EXECUTE {name}{args}"))
                .await
                .unwrap()
            {
                if let tokio_postgres::SimpleQueryMessage::Row(row) = row {
                    plans.push_str(row.get(0).unwrap_or_default());
                    plans.push('\n');
                }
            }
        }
        plans
    }

    #[tokio::test]
    async fn the_batch_statements_find_envelopes_by_key_even_when_planned_on_an_empty_queue() {
        let Some((url, _)) = microbot_test_support::engines::services("hot_writes_plans") else {
            return;
        };
        let schema = microbot_test_support::engines::Schema::new(&url, "t_hot_plans");
        // The real schema, made by the storage's own migration.
        drop(
            super::super::PostgresStorage::open(&schema.url, 1)
                .await
                .unwrap(),
        );
        let (client, connection) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let outside = generic_plans(&client).await;
        assert!(
            outside.contains("Seq Scan on envelopes"),
            "the control: planned on an empty table, the acknowledgement DELETE scans it\n{outside}"
        );
        for flush in [FlushWait::AfterCommit, FlushWait::InCommit] {
            client.batch_execute(flush.begin()).await.unwrap();
            let inside = generic_plans(&client).await;
            client.batch_execute("ROLLBACK").await.unwrap();
            assert!(
                !inside.contains("Seq Scan"),
                "inside the batch's transaction ({flush:?}) no statement scans a table\n{inside}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_ways_of_waiting_for_the_flush_store_and_acknowledge() {
        use std::sync::Arc;

        use crate::storage::{OutgoingEnvelope, OwnedSendMeta};

        let Some((url, _)) = microbot_test_support::engines::services("hot_writes_flush") else {
            return;
        };
        let schema = microbot_test_support::engines::Schema::new(&url, "t_hot_flush");
        let storage = super::super::PostgresStorage::open(&schema.url, 2)
            .await
            .unwrap();
        let (_, devices) = crate::storage::test_rows::alice_with_devices(&storage, 1).await;
        let device = devices[0];
        let (client, connection) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        assert_eq!(
            FlushWait::available(&client).await.ok(),
            Some(FlushWait::AfterCommit),
            "any role may emit the marker unless it was revoked"
        );
        for flush in [FlushWait::AfterCommit, FlushWait::InCommit] {
            let config: tokio_postgres::Config = schema.url.parse().unwrap();
            let writer =
                super::HotWriter::start(Arc::new(super::Pool::new(config, 2).unwrap()), flush);
            let meta = OwnedSendMeta {
                sender_username: "alice".to_owned(),
                sender_device_id: device,
                now_ms: 1,
                expires_at_ms: u64::MAX / 4,
                max_queue_len: 100,
                max_per_sender: 100,
            };
            let sends: Vec<_> = (0..8u8)
                .map(|i| {
                    writer.enqueue(
                        meta.clone(),
                        vec![OutgoingEnvelope {
                            recipient_device_id: device,
                            ciphertext: bytes::Bytes::from(vec![i; 4]),
                        }],
                    )
                })
                .collect();
            let mut ids = Vec::new();
            for send in sends {
                ids.extend(send.await.unwrap());
            }
            assert_eq!(ids.len(), 8, "{flush:?}");
            let queued: i64 = client
                .query_one(
                    "SELECT queue_len FROM devices WHERE id = $1",
                    &[&(device as i64)],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(queued, 8, "{flush:?}: the kept queue length");
            assert_eq!(writer.ack(device, ids).await.unwrap(), 8, "{flush:?}");
            let left: i64 = client
                .query_one("SELECT COUNT(*) FROM envelopes", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(left, 0, "{flush:?}");
            // No writer connection was left inside a transaction (its last
            // statement would be one of the batch's).
            let open: i64 = client
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state LIKE 'idle in transaction%' AND (query LIKE 'WITH stored AS%' \
                     OR query LIKE 'WITH gone AS%' OR query LIKE 'SELECT nextval%' \
                     OR query LIKE '%FOR UPDATE')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(open, 0, "{flush:?}");
        }
    }
}
