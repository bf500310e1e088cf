//! Transfer progress (DESIGN "client SDK"): the plaintext byte counts an
//! upload or download reports through the application's callback, which
//! never go backwards and end at the file's size. Not owned here: the
//! transfer itself (mod.rs, stream.rs).

use std::sync::atomic::{AtomicU64, Ordering};

/// How far a transfer got, in plaintext bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the file sent or received so far.
    pub done_bytes: u64,
    /// Size of the file.
    pub total_bytes: u64,
}

/// Reports progress, never going backwards.
pub(super) struct Reporter<'a> {
    callback: &'a (dyn Fn(Progress) + Send + Sync),
    total: u64,
    last: AtomicU64,
}

impl<'a> Reporter<'a> {
    pub(super) fn new(callback: &'a (dyn Fn(Progress) + Send + Sync), total: u64) -> Self {
        callback(Progress {
            done_bytes: 0,
            total_bytes: total,
        });
        Self {
            callback,
            total,
            last: AtomicU64::new(0),
        }
    }

    pub(super) fn report(&self, done: u64) {
        let done = done.min(self.total);
        if self.last.fetch_max(done, Ordering::Relaxed) < done {
            (self.callback)(Progress {
                done_bytes: done,
                total_bytes: self.total,
            });
        }
    }
}
