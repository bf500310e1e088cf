//! Group commit for the SQLite storage: the hot writes (envelope enqueue,
//! group fan-out, acknowledgements, login times) of concurrent requests
//! share one transaction and so one fsync, instead of one fsync each.
//!
//! A dedicated writer thread takes every job waiting in its channel (up to
//! [`MAX_BATCH`]), runs them in one `BEGIN IMMEDIATE` transaction, each
//! inside its own savepoint (a job that fails — a full queue, an unknown
//! device — rolls back only its own writes and gets its own error), then
//! commits once, without waiting for the disk; the sync thread
//! ([`super::wal_sync`]) then fsyncs the WAL while the writer runs the next
//! batch, and only after that sync does any caller learn its result: an
//! acknowledgement still means "on disk" (SPEC.md §12.5, §12.7, §14). When
//! the commit fails, every job of the batch gets the error and nothing of
//! the batch is stored. Writes outside the writer (`synchronous = FULL` on
//! the shared connection) still fsync in their own commit.
//!
//! A job that runs every check before its first write
//! ([`Isolation::ChecksFirst`]: enqueue, acknowledge) needs no savepoint:
//! when it fails, the connection's change counter proves it wrote nothing,
//! and it fails alone; should it ever fail after writing, the whole batch is
//! rolled back and every job of it gets the error. Savepoints made a page
//! copy into SQLite's sub-journal for every first touch of a page and four
//! statements per message, which showed in profiles of the message path.
//!
//! No job waits for a timer: a batch is whatever arrived while the previous
//! batch was being written, so a lone request pays one fsync as before and
//! concurrent requests share one.
//!
//! Not owned here: what the jobs write (sqlite.rs, groups.rs).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::wal_sync::{Settle, Syncer, WalFile};
use crate::storage::{StorageError, StorageFuture, StorageResult};

/// Most jobs in one transaction.
pub const MAX_BATCH: usize = 512;

/// How a job's writes are kept apart from the rest of its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isolation {
    /// In a savepoint of its own: a failure anywhere rolls back only this job.
    Savepoint,
    /// The job checks everything before it writes, so a failure leaves
    /// nothing to roll back (verified; see the module doc).
    ChecksFirst,
}

/// One job of a batch, type-erased.
trait Work: Send {
    /// How the job is isolated from the rest of its batch.
    fn isolation(&self) -> Isolation;
    /// Runs inside the batch transaction; true when it succeeded (its
    /// savepoint is kept), false when its writes must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Delivers the outcome once the batch is committed (or failed).
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct Job<T, F> {
    isolation: Isolation,
    work: Option<F>,
    result: Option<StorageResult<T>>,
    /// Where the job's outcome goes: the task awaiting it.
    reply: tokio::sync::oneshot::Sender<StorageResult<T>>,
}

impl<T, F> Work for Job<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StorageResult<T> + Send,
{
    fn isolation(&self) -> Isolation {
        self.isolation
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A panicking job must not take the writer thread (and so every
        // later write) down with it: it fails alone.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(StorageError::Database("storage job panicked".to_owned())));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let outcome = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)) | None, Err(message)) => Err(StorageError::Database(message)),
            (None, Ok(())) => Err(StorageError::Database("storage job was not run".to_owned())),
        };
        // The caller may have gone (a dropped connection task); the write
        // stands, as it would had the reply been lost on the network.
        let _ = self.reply.send(outcome);
    }
}

/// The writer thread and the channel to it.
pub(super) struct GroupCommit {
    jobs: Option<mpsc::Sender<Box<dyn Work>>>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the writer thread on `conn`, and for a database file the
    /// thread that syncs its write-ahead log.
    pub(super) fn start(conn: Arc<Mutex<Connection>>) -> std::io::Result<Self> {
        let wal = WalFile::of(&conn.lock().unwrap_or_else(PoisonError::into_inner));
        let syncer = match wal {
            Some(wal) => Some(Syncer::start(Box::new(wal))?),
            None => None,
        };
        let (tx, rx) = mpsc::channel::<Box<dyn Work>>();
        let thread = std::thread::Builder::new()
            .name("sqlite-group-commit".to_owned())
            .spawn(move || writer_loop(&conn, &rx, syncer))?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next batch: the job is queued at once and the
    /// future resolves with its result after the batch's commit, without a
    /// thread blocked in between.
    pub(super) fn submit<T, F>(&self, isolation: Isolation, work: F) -> StorageFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel();
        let queued = self.queue(isolation, work, reply);
        Box::pin(async move {
            queued?;
            result.await.map_err(|_| stopped())?
        })
    }

    fn queue<T, F>(
        &self,
        isolation: Isolation,
        work: F,
        reply: tokio::sync::oneshot::Sender<StorageResult<T>>,
    ) -> StorageResult<()>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        let job: Box<dyn Work> = Box::new(Job {
            isolation,
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Closing the channel ends the loop once the queued jobs are done.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> StorageError {
    StorageError::Database("the storage writer has stopped".to_owned())
}

/// A committed batch waiting for its sync.
struct Committed(Vec<Box<dyn Work>>);

impl Settle for Committed {
    fn settle(self, synced: Result<(), String>) {
        for job in self.0 {
            job.finish(synced.clone());
        }
    }
}

/// Takes batches until every sender is gone. The syncer is the thread's
/// own, so it answers every batch it holds before the thread ends (and the
/// storage closes the connection).
fn writer_loop(
    conn: &Mutex<Connection>,
    rx: &mpsc::Receiver<Box<dyn Work>>,
    syncer: Option<Syncer<Committed>>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(conn, batch, syncer.as_ref());
    }
}

fn run_batch(
    conn: &Mutex<Connection>,
    mut batch: Vec<Box<dyn Work>>,
    syncer: Option<&Syncer<Committed>>,
) {
    if let Some(failure) = syncer.and_then(Syncer::failure) {
        Committed(batch).settle(Err(failure));
        return;
    }
    let guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
    // An in-memory database has no log to sync: its commit is the answer.
    let commit = match syncer {
        Some(_) => commit_unsynced(&guard, &mut batch),
        None => execute_batch(&guard, &mut batch),
    };
    drop(guard);
    match (commit, syncer) {
        (Ok(()), Some(syncer)) => syncer.hand_over(Committed(batch)),
        (commit, _) => Committed(batch).settle(commit),
    }
}

/// Runs the batch with `synchronous = NORMAL` (the commit does not wait
/// for the disk; the syncer's fsync follows) and puts `FULL` back for every
/// other write on the connection. The setting cannot change inside a
/// transaction, so it brackets the batch's.
fn commit_unsynced(conn: &Connection, batch: &mut [Box<dyn Work>]) -> Result<(), String> {
    control(conn, "PRAGMA synchronous = NORMAL").map_err(|e| e.to_string())?;
    let commit = execute_batch(conn, batch);
    if let Err(e) = control(conn, "PRAGMA synchronous = FULL") {
        // Outside a transaction this cannot fail but for lack of memory;
        // the connection's other writers would then commit without fsync.
        tracing::error!(error = %e, "cannot restore synchronous = FULL on the storage connection");
    }
    commit
}

/// Runs one control statement (BEGIN, SAVEPOINT, …) through the statement
/// cache: they run several times per batch, and parsing them showed in
/// profiles.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Undoes the open transaction, if SQLite has not already done so.
fn abandon(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = control(conn, "ROLLBACK");
    }
}

/// Runs every job in one transaction; `Err` means nothing was committed.
///
/// A lone job needs no savepoint: if it fails, the whole (one-job)
/// transaction is rolled back and the job reports its own error.
fn execute_batch(conn: &Connection, batch: &mut [Box<dyn Work>]) -> Result<(), String> {
    control(conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string())?;
    if let [job] = batch {
        if !job.run(conn) {
            abandon(conn);
            return Err("the request failed".to_owned());
        }
    } else {
        for job in batch.iter_mut() {
            if job.isolation() == Isolation::ChecksFirst {
                let before = conn.total_changes();
                let failed_after_writing = !job.run(conn) && conn.total_changes() != before;
                let failure = if failed_after_writing {
                    Some("a failed request had written: batch rolled back".to_owned())
                } else if conn.is_autocommit() {
                    Some("transaction rolled back".to_owned())
                } else {
                    None
                };
                if let Some(message) = failure {
                    abandon(conn);
                    return Err(message);
                }
                continue;
            }
            let step = control(conn, "SAVEPOINT job").and_then(|()| {
                if job.run(conn) {
                    control(conn, "RELEASE job")
                } else {
                    control(conn, "ROLLBACK TO job").and_then(|()| control(conn, "RELEASE job"))
                }
            });
            // Some errors (I/O, disk full) make SQLite roll the whole
            // transaction back by itself: then nothing of the batch can commit.
            let failure = match step {
                Err(e) => Some(e.to_string()),
                Ok(()) if conn.is_autocommit() => Some("transaction rolled back".to_owned()),
                Ok(()) => None,
            };
            if let Some(message) = failure {
                abandon(conn);
                return Err(message);
            }
        }
    }
    if let Err(e) = control(conn, "COMMIT") {
        abandon(conn);
        return Err(e.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rusqlite::Connection;

    use super::{GroupCommit, Isolation};

    impl GroupCommit {
        /// [`GroupCommit::submit`] awaited from a plain thread, as the
        /// concurrent callers of these tests are.
        fn run<T, F>(&self, isolation: Isolation, work: F) -> crate::storage::StorageResult<T>
        where
            T: Send + 'static,
            F: FnOnce(&Connection) -> crate::storage::StorageResult<T> + Send + 'static,
        {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(self.submit(isolation, work))
        }
    }

    use crate::storage::sqlite::SqliteStorage;
    use crate::storage::{
        FetchPage, OutgoingEnvelope, SendMeta, Storage, StorageError, StorageResult,
    };

    fn meta(max_queue_len: u32) -> SendMeta<'static> {
        SendMeta {
            sender_username: "alice",
            sender_device_id: 1,
            now_ms: 1_000,
            expires_at_ms: 1_000_000,
            max_queue_len,
            max_per_sender: max_queue_len,
        }
    }

    fn page() -> FetchPage {
        FetchPage {
            limit: 1000,
            max_bytes: 1 << 20,
            overhead: 0,
            now_ms: 1_000,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_commit_together_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(SqliteStorage::open(&dir.path().join("db.sqlite3")).unwrap());
        let (_, devices) = crate::storage::test_rows::alice_with_devices(&*storage, 2).await;
        let (roomy, tight) = (devices[0], devices[1]);
        // 16 tasks at once: the valid sends all land, the sends to an
        // unknown device and past the tight queue's cap of 3 fail alone.
        let threads: Vec<_> = (0..16u8)
            .map(|i| {
                let storage = Arc::clone(&storage);
                tokio::spawn(async move {
                    let to = match i % 4 {
                        0 => 999_999,
                        1 => tight,
                        _ => roomy,
                    };
                    let envelope = OutgoingEnvelope {
                        recipient_device_id: to,
                        ciphertext: bytes::Bytes::from(vec![i; 8]),
                    };
                    let cap = if to == tight { 3 } else { 100 };
                    (i, storage.enqueue(&meta(cap), &[envelope]).await)
                })
            })
            .collect();
        let mut stored = 0;
        let mut tight_ok = 0;
        for thread in threads {
            let (i, result) = thread.await.unwrap();
            match (i % 4, result) {
                (0, Err(StorageError::UnknownDevice(999_999))) => {}
                (1, Ok(ids)) => {
                    assert_eq!(ids.len(), 1);
                    tight_ok += 1;
                    stored += 1;
                }
                (1, Err(StorageError::QueueFull(devices))) => assert_eq!(devices, vec![tight]),
                (_, Ok(ids)) => {
                    assert_eq!(ids.len(), 1);
                    stored += 1;
                }
                (kind, other) => panic!("send kind {kind}: unexpected {other:?}"),
            }
        }
        assert_eq!(tight_ok, 3, "the cap holds inside a shared transaction");
        let (roomy_rows, _) = storage.fetch_envelopes(roomy, 0, page()).await.unwrap();
        let (tight_rows, _) = storage.fetch_envelopes(tight, 0, page()).await.unwrap();
        assert_eq!(roomy_rows.len() + tight_rows.len(), stored);
        assert_eq!(roomy_rows.len(), 8);
        // Acks go through the same writer.
        let ids: Vec<u64> = roomy_rows.iter().map(|e| e.id).collect();
        assert_eq!(storage.ack_envelopes(roomy, &ids).await.unwrap(), 8);
        assert_eq!(storage.queue_len(roomy, 1_000).await.unwrap(), 0);
        // Dropping the storage stops the writer thread cleanly and the data
        // is on disk for the next open.
        drop(storage);
        let reopened = SqliteStorage::open(&dir.path().join("db.sqlite3")).unwrap();
        assert_eq!(reopened.queue_len(tight, 1_000).await.unwrap(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_database_batch_is_synced_and_the_connection_stays_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let conn = Arc::new(Mutex::new(conn));
        let writer = GroupCommit::start(Arc::clone(&conn)).unwrap();
        let writes: Vec<_> = (0..32i64)
            .map(|v| {
                writer.submit(Isolation::ChecksFirst, move |c: &Connection| {
                    c.execute("INSERT INTO t (v) VALUES (?1)", [v])
                        .map(|_| ())
                        .map_err(|e| StorageError::Database(e.to_string()))
                })
            })
            .collect();
        for write in writes {
            write.await.unwrap();
        }
        // Between batches the shared connection is back to FULL (2), so
        // writes outside the writer still fsync in their own commit.
        let level: i64 = conn
            .lock()
            .unwrap()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(level, 2);
        drop(writer);
        let reader = Connection::open(&path).unwrap();
        let rows: i64 = reader
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 32);
    }

    #[test]
    fn a_checks_first_job_that_failed_after_writing_rolls_its_batch_back() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let conn = Arc::new(Mutex::new(conn));
        let writer = Arc::new(GroupCommit::start(Arc::clone(&conn)).unwrap());
        let insert = |v: i64| {
            move |c: &Connection| -> StorageResult<()> {
                c.execute("INSERT INTO t (v) VALUES (?1)", [v])
                    .map(|_| ())
                    .map_err(|e| StorageError::Database(e.to_string()))
            }
        };
        // A slow first batch, so the next three jobs queue up and share one.
        let slow = {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                writer.run(Isolation::Savepoint, move |c: &Connection| {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    insert(1)(c)
                })
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        let jobs: Vec<_> = [
            (Isolation::ChecksFirst, 2, false),
            (Isolation::ChecksFirst, 3, true),
            (Isolation::ChecksFirst, 4, false),
        ]
        .into_iter()
        .map(|(isolation, v, fail_after_writing)| {
            let writer = Arc::clone(&writer);
            let job = move |c: &Connection| {
                insert(v)(c)?;
                if fail_after_writing {
                    return Err(StorageError::Database("failed after writing".into()));
                }
                Ok(())
            };
            let handle = std::thread::spawn(move || writer.run(isolation, job));
            std::thread::sleep(std::time::Duration::from_millis(20));
            handle
        })
        .collect();
        slow.join().unwrap().unwrap();
        let results: Vec<_> = jobs.into_iter().map(|j| j.join().unwrap()).collect();
        assert!(
            results.iter().all(Result::is_err),
            "the whole batch failed: {results:?}"
        );
        let values: Vec<i64> = {
            let c = conn.lock().unwrap();
            let mut stmt = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(values, vec![1], "nothing of the failed batch was kept");
        // A checks-first job that fails before writing fails alone.
        let ok = {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || writer.run(Isolation::ChecksFirst, insert(5)))
        };
        let refused = writer.run(
            Isolation::ChecksFirst,
            |_c: &Connection| -> StorageResult<()> { Err(StorageError::UnknownDevice(7)) },
        );
        assert!(matches!(refused, Err(StorageError::UnknownDevice(7))));
        ok.join().unwrap().unwrap();
    }
}
