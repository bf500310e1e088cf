//! The engines the scale-out tests share: the PostgreSQL and Redis URLs
//! from the environment (`eval "$(bash scripts/services.sh)"` sets them),
//! a fresh PostgreSQL schema per test (dropped at the end), and SQL run as
//! the administrating role. Used by the server's cluster, Redis-fallback and
//! storage-backend tests and by the client's failover test.

/// The engines the tests need, or None (the test then says it skipped).
pub fn services(test: &str) -> Option<(String, String)> {
    match (
        std::env::var("MICROBOT_TEST_POSTGRES"),
        std::env::var("MICROBOT_TEST_REDIS"),
    ) {
        (Ok(pg), Ok(redis)) if !pg.is_empty() && !redis.is_empty() => Some((pg, redis)),
        _ => {
            eprintln!(
                "{test}: MICROBOT_TEST_POSTGRES / MICROBOT_TEST_REDIS not set, skipped \
                 (eval \"$(bash scripts/services.sh)\" starts both)"
            );
            None
        }
    }
}

/// Runs one SQL batch as the administrating role.
pub fn admin(url: &str, sql: &str) -> Result<(), String> {
    // Its own thread and runtime: callers may be inside a tokio runtime.
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            client.batch_execute(&sql).await.map_err(|e| e.to_string())
        })
    })
    .join()
    .unwrap()
}

/// A fresh PostgreSQL schema, dropped at the end.
pub struct Schema {
    admin_url: String,
    name: String,
    /// URL whose connections use the schema.
    pub url: String,
}

impl Schema {
    /// A fresh schema named after `test`.
    pub fn new(admin_url: &str, test: &str) -> Self {
        let name = format!("{test}_{}", random_hex(4));
        admin(admin_url, &format!("CREATE SCHEMA {name}")).unwrap();
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{admin_url}{sep}options=-c%20search_path%3D{name}"),
            admin_url: admin_url.to_owned(),
            name,
        }
    }
}

impl Schema {
    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = admin(
            &self.admin_url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// `bytes` random bytes as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(buf.as_mut_slice());
    hex::encode(buf)
}
