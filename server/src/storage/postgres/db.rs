//! [`Db`]: a connection or transaction with a per-connection cache of
//! prepared statements, so each SQL text is parsed once per connection and
//! every later use is one round trip.

use deadpool_postgres::StatementCache;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Portal, Row, Statement, Transaction};

use super::PgResult;

/// What statements are prepared on: the connection's client, which a
/// transaction borrows.
pub(crate) trait OnConnection {
    /// The connection's client.
    fn connection(&self) -> &Client;
}

impl OnConnection for Client {
    fn connection(&self) -> &Client {
        self
    }
}

impl OnConnection for Transaction<'_> {
    fn connection(&self) -> &Client {
        self.client()
    }
}

/// A client or transaction plus its connection's statement cache.
pub(crate) struct Db<'a, C> {
    pub(super) client: &'a C,
    pub(super) cache: &'a StatementCache,
}

/// A [`Db`] inside a transaction.
pub(crate) type Tx<'a, 'c> = Db<'a, Transaction<'c>>;

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<C: GenericClient + OnConnection + Sync> Db<'_, C> {
    async fn statement(&self, sql: &str) -> PgResult<Statement> {
        Ok(self.cache.prepare(self.client.connection(), sql).await?)
    }

    /// Prepares each statement not yet in the cache. Queries issued
    /// together afterwards reach the server in the order they are first
    /// polled (none waits for its own `PREPARE` first), which a pipeline
    /// that takes row locks before anything else relies on.
    pub(crate) async fn prepare(&self, sqls: &[&str]) -> PgResult<()> {
        for sql in sqls {
            self.statement(sql).await?;
        }
        Ok(())
    }

    /// All rows.
    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> PgResult<Vec<Row>> {
        let statement = self.statement(sql).await?;
        Ok(self.client.query(&statement, params).await?)
    }

    /// Exactly one row.
    pub(crate) async fn query_one(&self, sql: &str, params: Params<'_>) -> PgResult<Row> {
        let statement = self.statement(sql).await?;
        Ok(self.client.query_one(&statement, params).await?)
    }

    /// At most one row.
    pub(crate) async fn query_opt(&self, sql: &str, params: Params<'_>) -> PgResult<Option<Row>> {
        let statement = self.statement(sql).await?;
        Ok(self.client.query_opt(&statement, params).await?)
    }

    /// Rows changed.
    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> PgResult<u64> {
        let statement = self.statement(sql).await?;
        Ok(self.client.execute(&statement, params).await?)
    }
}

impl Db<'_, Transaction<'_>> {
    /// A portal to read a query's rows in chunks.
    pub(crate) async fn bind(&self, sql: &str, params: Params<'_>) -> PgResult<Portal> {
        let statement = self.statement(sql).await?;
        Ok(self.client.bind(&statement, params).await?)
    }

    /// Up to `max_rows` more rows of `portal`.
    pub(crate) async fn query_portal(&self, portal: &Portal, max_rows: i32) -> PgResult<Vec<Row>> {
        Ok(self.client.query_portal(portal, max_rows).await?)
    }
}
