//! Durability for the group-commit writer, off its critical path: the
//! writer commits a batch without waiting for the disk (`synchronous =
//! NORMAL` for that commit only) and hands the batch over to a sync thread,
//! which makes the write-ahead log durable (`fdatasync`) and only then
//! answers the batch's callers. While the disk works, the writer runs the
//! next batch; one sync covers every batch committed before it started.
//!
//! Why this keeps "answered means on disk" (SPEC.md §12.7): every commit
//! appends its frames to the WAL file, so an `fdatasync` of that file after
//! the commit returned makes the commit durable. SQLite itself syncs the
//! WAL before each checkpoint copies it into the database, the database
//! after the checkpoint, and the WAL header when the log is restarted
//! (`synchronous = NORMAL` in WAL mode). A crash before the sync loses a
//! suffix of the log: WAL recovery keeps the longest prefix of complete
//! commits (its frame checksums are chained), so a later batch never
//! survives without an earlier one, and nobody was told either had landed.
//! Other connections may read a batch before it is synced (a recipient may
//! fetch a message whose sender has no answer yet); after a crash that
//! message is gone from the server, and the sender, unanswered, sends it
//! again.
//!
//! A failed sync is final: the page cache may have dropped the pages it
//! could not write, so a later sync that succeeds proves nothing. The
//! batches of that sync and every later write of the writer get the error,
//! and the server says so in its log; a restart recovers what the disk has.
//!
//! Not owned here: running the batches (group_commit.rs).

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// Makes every write committed so far durable.
pub(super) trait Flush: Send + 'static {
    /// Blocks until the commits made before the call are on stable storage.
    ///
    /// # Errors
    /// The I/O error of the sync; the commits may not be durable.
    fn flush(&mut self) -> std::io::Result<()>;
}

/// The write-ahead log of a database file: `fdatasync` of `<db>-wal`, and
/// of its directory the first time (SQLite syncs a new log's directory
/// entry at its first sync, which with `NORMAL` is the first checkpoint).
pub(super) struct WalFile {
    wal: PathBuf,
    directory_synced: bool,
}

impl WalFile {
    /// The log of the database `conn` has open, or `None` for an in-memory
    /// or temporary database, which has none to sync.
    pub(super) fn of(conn: &rusqlite::Connection) -> Option<Self> {
        let db = conn.path().filter(|p| !p.is_empty())?;
        Some(Self {
            wal: PathBuf::from(format!("{db}-wal")),
            directory_synced: false,
        })
    }
}

impl Flush for WalFile {
    fn flush(&mut self) -> std::io::Result<()> {
        // Opened for each sync, so a log SQLite truncated or created anew
        // is the one synced. It exists from the first WAL-mode open until
        // the last connection closes, and the writer's stays open.
        File::open(&self.wal)?.sync_data()?;
        if !self.directory_synced {
            if let Some(directory) = self.wal.parent() {
                File::open(directory)?.sync_all()?;
            }
            self.directory_synced = true;
        }
        Ok(())
    }
}

/// Something committed that waits for the sync before it may be answered.
pub(super) trait Settle: Send + 'static {
    /// Answers its callers: `Ok` once durable, else the sync's error.
    fn settle(self, synced: Result<(), String>);
}

/// The sync thread and the channel to it.
pub(super) struct Syncer<B: Settle> {
    batches: Option<mpsc::Sender<B>>,
    thread: Option<JoinHandle<()>>,
    failure: Arc<OnceLock<String>>,
}

impl<B: Settle> Syncer<B> {
    /// Starts the sync thread over `flush`.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub(super) fn start(mut flush: Box<dyn Flush>) -> std::io::Result<Self> {
        let (batches, queue) = mpsc::channel::<B>();
        let failure = Arc::new(OnceLock::new());
        let failed = Arc::clone(&failure);
        let thread = std::thread::Builder::new()
            .name("sqlite-wal-sync".to_owned())
            .spawn(move || sync_loop(flush.as_mut(), &queue, &failed))?;
        Ok(Self {
            batches: Some(batches),
            thread: Some(thread),
            failure,
        })
    }

    /// Why the log can no longer be trusted to reach the disk, once a sync
    /// has failed.
    pub(super) fn failure(&self) -> Option<String> {
        self.failure.get().cloned()
    }

    /// Queues a committed batch for the next sync.
    pub(super) fn hand_over(&self, batch: B) {
        let refused = match &self.batches {
            Some(batches) => batches.send(batch).err().map(|e| e.0),
            None => Some(batch),
        };
        if let Some(batch) = refused {
            batch.settle(Err("the storage sync thread has stopped".to_owned()));
        }
    }
}

impl<B: Settle> Drop for Syncer<B> {
    fn drop(&mut self) {
        // Closing the channel ends the loop once every batch is answered.
        drop(self.batches.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sync_loop<B: Settle>(
    flush: &mut dyn Flush,
    queue: &mpsc::Receiver<B>,
    failure: &OnceLock<String>,
) {
    while let Ok(first) = queue.recv() {
        let mut batches = vec![first];
        batches.extend(queue.try_iter());
        let synced = match failure.get() {
            Some(earlier) => Err(earlier.clone()),
            None => flush.flush().map_err(|e| {
                let message = format!(
                    "the write-ahead log could not be synced to disk ({e}): \
                     no write is confirmed until the server restarts"
                );
                tracing::error!(error = %e, "storage sync failed; refusing every later write");
                failure.get_or_init(|| message).clone()
            }),
        };
        for batch in batches {
            batch.settle(synced.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::{Flush, Settle, Syncer, WalFile};

    /// A flush that waits for the test's go-ahead and reports each call.
    struct Gate {
        calls: mpsc::Sender<()>,
        go: mpsc::Receiver<std::io::Result<()>>,
    }

    impl Flush for Gate {
        fn flush(&mut self) -> std::io::Result<()> {
            let _ = self.calls.send(());
            self.go.recv().unwrap_or(Ok(()))
        }
    }

    struct Answer(u32, mpsc::Sender<(u32, Result<(), String>)>);

    impl Settle for Answer {
        fn settle(self, synced: Result<(), String>) {
            let _ = self.1.send((self.0, synced));
        }
    }

    /// A syncer over a [`Gate`]: the syncer, the flush calls it made, the
    /// go-ahead for each, and where the batches' answers arrive, with the
    /// sender for the batches.
    #[allow(clippy::type_complexity)]
    fn gated() -> (
        Syncer<Answer>,
        mpsc::Receiver<()>,
        mpsc::Sender<std::io::Result<()>>,
        mpsc::Sender<(u32, Result<(), String>)>,
        mpsc::Receiver<(u32, Result<(), String>)>,
    ) {
        let (calls, called) = mpsc::channel();
        let (go, gate) = mpsc::channel();
        let syncer = Syncer::start(Box::new(Gate { calls, go: gate })).unwrap();
        let (answers, answered) = mpsc::channel();
        (syncer, called, go, answers, answered)
    }

    #[test]
    fn batches_are_answered_only_after_a_sync_that_started_after_them() {
        let (syncer, called, go, answers, answered) = gated();
        syncer.hand_over(Answer(1, answers.clone()));
        called.recv().unwrap();
        // Batches 2 and 3 arrive while the first sync is in progress: they
        // wait for a second sync, and nothing is answered before its flush.
        syncer.hand_over(Answer(2, answers.clone()));
        syncer.hand_over(Answer(3, answers.clone()));
        assert!(answered.recv_timeout(Duration::from_millis(100)).is_err());
        go.send(Ok(())).unwrap();
        assert_eq!(answered.recv().unwrap(), (1, Ok(())));
        called.recv().unwrap();
        assert!(answered.recv_timeout(Duration::from_millis(100)).is_err());
        go.send(Ok(())).unwrap();
        assert_eq!(answered.recv().unwrap(), (2, Ok(())));
        assert_eq!(answered.recv().unwrap(), (3, Ok(())));
        assert_eq!(syncer.failure(), None);
    }

    #[test]
    fn a_failed_sync_fails_its_batches_and_every_later_one() {
        let (syncer, called, go, answers, answered) = gated();
        syncer.hand_over(Answer(1, answers.clone()));
        called.recv().unwrap();
        go.send(Err(std::io::Error::other("EIO"))).unwrap();
        let (id, result) = answered.recv().unwrap();
        assert_eq!(id, 1);
        assert!(result.unwrap_err().contains("EIO"));
        assert!(syncer.failure().is_some_and(|f| f.contains("EIO")));
        // A later sync would succeed, but proves nothing: no flush is even tried.
        syncer.hand_over(Answer(2, answers.clone()));
        let (id, result) = answered.recv().unwrap();
        assert_eq!(id, 2);
        assert!(result.is_err());
        assert!(
            called.try_recv().is_err(),
            "no second flush after a failure"
        );
    }

    #[test]
    fn dropping_the_syncer_answers_what_it_holds() {
        let (syncer, _called, go, answers, answered) = gated();
        go.send(Ok(())).unwrap();
        syncer.hand_over(Answer(7, answers));
        drop(syncer);
        assert_eq!(answered.try_recv().unwrap(), (7, Ok(())));
    }

    #[test]
    fn the_log_of_a_file_database_is_synced_and_an_in_memory_one_has_none() {
        let memory = rusqlite::Connection::open_in_memory().unwrap();
        assert!(WalFile::of(&memory).is_none());
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("db.sqlite3")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1)")
            .unwrap();
        let mut wal = WalFile::of(&conn).unwrap();
        assert!(wal.wal.ends_with("db.sqlite3-wal"));
        wal.flush().unwrap();
        assert!(wal.directory_synced);
        // No log (never opened in WAL mode, or removed): the sync says so.
        let mut missing = WalFile {
            wal: dir.path().join("none-wal"),
            directory_synced: false,
        };
        assert!(missing.flush().is_err());
    }
}
