//! A small connection pool for [`super::PostgresStorage`]: idle clients in a
//! stack, a semaphore bounding how many exist, new connections made on
//! demand. A client whose connection died is dropped instead of reused.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{Client, NoTls};

use super::PgError;
use super::db::StatementCache;

/// Time allowed to open one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Up to `size` connections to one database.
pub(super) struct Pool {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<(Client, StatementCache)>>,
    permits: Semaphore,
}

/// A checked-out client; goes back to the pool when dropped, unless it may
/// be inside a transaction its user began by hand and did not end
/// ([`Pooled::open_transaction`]): such a client is closed instead, and
/// PostgreSQL rolls the transaction back.
pub(super) struct Pooled<'a> {
    client: Option<(Client, StatementCache)>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
    in_transaction: bool,
}

impl Pool {
    pub(super) fn new(mut config: tokio_postgres::Config, size: usize) -> Self {
        config.connect_timeout(CONNECT_TIMEOUT);
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<(Client, StatementCache)>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle client, or a new connection. Must run inside a tokio runtime
    /// (the server's: the connection task is spawned on it).
    pub(super) async fn get(&self) -> Result<Pooled<'_>, PgError> {
        let permit = self.permits.acquire().await.map_err(|_| PgError::Closed)?;
        loop {
            let reused = self.idle().pop();
            match reused {
                Some(client) if !client.0.is_closed() => {
                    return Ok(Pooled {
                        client: Some(client),
                        pool: self,
                        _permit: permit,
                        in_transaction: false,
                    });
                }
                Some(_) => {}
                None => break,
            }
        }
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "PostgreSQL connection closed");
            }
        });
        Ok(Pooled {
            client: Some((client, StatementCache::default())),
            pool: self,
            _permit: permit,
            in_transaction: false,
        })
    }
}

impl Pooled<'_> {
    /// Says the user is about to send `BEGIN` itself (to pipeline it with
    /// the transaction's first statements): until
    /// [`Pooled::transaction_ended`], dropping this closes the connection
    /// rather than handing a client in an open transaction to the next user.
    pub(super) fn open_transaction(&mut self) {
        self.in_transaction = true;
    }

    /// Says the transaction begun by hand was committed or rolled back.
    pub(super) fn transaction_ended(&mut self) {
        self.in_transaction = false;
    }

    /// The client and its statement cache (present until drop).
    pub(super) fn parts(&mut self) -> Result<(&mut Client, &StatementCache), PgError> {
        self.client
            .as_mut()
            .map(|(client, cache)| (client, &*cache))
            .ok_or(PgError::Closed)
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.0.is_closed()
            && !self.in_transaction
        {
            self.pool.idle().push(client);
        }
    }
}
