//! The connection pool of [`super::PostgresStorage`]: deadpool-postgres
//! (connections made on demand up to a maximum, a closed connection
//! dropped instead of reused, a prepared-statement cache per connection),
//! plus the one rule it does not know: a client whose user sent `BEGIN`
//! by hand and did not end the transaction is never handed to anyone else.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, PoolError, QueueMode, RecyclingMethod, StatementCache,
};
use tokio_postgres::{Client, NoTls};

use super::PgError;

/// Time allowed to open one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Up to `size` connections to one database.
pub(super) struct Pool(deadpool_postgres::Pool);

/// A checked-out client; goes back to the pool when dropped, unless it may
/// be inside a transaction its user began by hand and did not end
/// ([`Pooled::open_transaction`]): such a client is closed instead, and
/// PostgreSQL rolls the transaction back.
pub(super) struct Pooled {
    object: Option<Object>,
    /// The object's own cache, held apart so that [`Pooled::parts`] can
    /// lend it beside the client (which the wrapper lends only as a whole).
    cache: Arc<StatementCache>,
    in_transaction: bool,
}

impl Pool {
    /// A pool of at most `size` (at least one) connections made with
    /// `config`; none is opened before the first [`Pool::get`].
    ///
    /// # Errors
    /// Only if deadpool refuses the configuration.
    pub(super) fn new(mut config: tokio_postgres::Config, size: usize) -> Result<Self, String> {
        config.connect_timeout(CONNECT_TIMEOUT);
        let manager = Manager::from_config(
            config,
            NoTls,
            // A dead connection is noticed by tokio-postgres itself
            // (`is_closed`); no test query before each reuse.
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        deadpool_postgres::Pool::builder(manager)
            .max_size(size.max(1))
            // The most recently used client first: under light load a few
            // connections (and their PostgreSQL backends, with warm plan
            // and catalog caches) do all the work. In first-in-first-out
            // order every request went to the least recently used of 16,
            // and PostgreSQL spent 20 % more CPU per message.
            .queue_mode(QueueMode::Lifo)
            .build()
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// An idle client, or a new connection. Must run inside a tokio runtime
    /// (the server's: the connection task is spawned on it).
    pub(super) async fn get(&self) -> Result<Pooled, PgError> {
        let object = self.0.get().await.map_err(|e| match e {
            PoolError::Backend(e) => PgError::Db(e),
            PoolError::Closed => PgError::Closed,
            other => PgError::Pool(other.to_string()),
        })?;
        Ok(Pooled {
            cache: Arc::clone(&object.statement_cache),
            object: Some(object),
            in_transaction: false,
        })
    }
}

impl Pooled {
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

    /// The client and its connection's statement cache (present until drop).
    pub(super) fn parts(&mut self) -> Result<(&mut Client, &StatementCache), PgError> {
        let object = self.object.as_mut().ok_or(PgError::Closed)?;
        Ok((&mut **object, &*self.cache))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.in_transaction
            && let Some(object) = self.object.take()
        {
            // Out of the pool for good: dropping the client ends its
            // connection task, and with it the connection.
            drop(Object::take(object));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{Pool, Pooled};

    async fn get(pool: &Pool) -> Pooled {
        pool.get()
            .await
            .map_err(super::PgError::into_storage)
            .unwrap()
    }

    fn client(pooled: &mut Pooled) -> &mut tokio_postgres::Client {
        pooled
            .parts()
            .map_err(super::PgError::into_storage)
            .unwrap()
            .0
    }

    async fn backend(pool: &Pool) -> i32 {
        client(&mut get(pool).await)
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_left_in_a_transaction_is_closed_and_the_pool_opens_another() {
        let Some((url, _)) = microbot_test_support::engines::services("pool_transactions") else {
            return;
        };
        let pool = Pool::new(url.parse().unwrap(), 1).unwrap();
        let first = backend(&pool).await;
        assert_eq!(backend(&pool).await, first, "an idle client is reused");

        let mut pooled = get(&pool).await;
        pooled.open_transaction();
        client(&mut pooled)
            .batch_execute("BEGIN; CREATE TEMP TABLE left_open (v int)")
            .await
            .unwrap();
        drop(pooled);
        // One connection at most: the next get had to open a new one, and
        // it is not inside the abandoned transaction.
        let second = backend(&pool).await;
        assert_ne!(second, first, "the client in a transaction was not reused");
        let mut pooled = get(&pool).await;
        // The abandoned connection is closed, not leaked.
        let mut open = 1;
        for _ in 0..50 {
            open = client(&mut pooled)
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&first],
                )
                .await
                .unwrap()
                .get::<_, i64>(0);
            if open == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(open, 0, "the backend of the abandoned client is gone");

        // Ended by hand: back to the pool.
        pooled.open_transaction();
        client(&mut pooled)
            .batch_execute("BEGIN; COMMIT")
            .await
            .unwrap();
        pooled.transaction_ended();
        drop(pooled);
        assert_eq!(backend(&pool).await, second);
    }
}
