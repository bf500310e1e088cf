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

/// A checked-out client; goes back to the pool when dropped.
pub(super) struct Pooled<'a> {
    client: Option<(Client, StatementCache)>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
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
        })
    }
}

impl Pooled<'_> {
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
        {
            self.pool.idle().push(client);
        }
    }
}
