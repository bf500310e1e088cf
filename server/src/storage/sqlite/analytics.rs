//! SQLite implementation of [`AnalyticsStorage`] (SPEC.md §14.1
//! "Analytics").

use rusqlite::{Connection, OptionalExtension, params};

use super::group_commit::Isolation;
use super::{SqliteStorage, blocking, db, net_id, sql_id};
use crate::storage::StorageResult;
use crate::storage::analytics::{
    AnalyticsStorage, CohortRow, CountRow, Metric, cohort_of, count_value, nonzero, sightings,
    week_of,
};

/// Inserts one working-set row; `true` when it is new.
fn see(tx: &Connection, period: i64, kind: i16, id: i64) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "INSERT INTO analytics_seen (period, kind, id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?
    .execute(params![period, kind, id])
    .map(|n| n == 1)
}

fn add(tx: &Connection, day: i64, metric: Metric, n: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO analytics_counts (day, metric, value) VALUES (?1, ?2, ?3) \
         ON CONFLICT (day, metric) DO UPDATE SET value = value + excluded.value",
    )?
    .execute(params![day, metric.as_str(), count_value(n)])?;
    Ok(())
}

#[async_trait::async_trait]
impl AnalyticsStorage for SqliteStorage {
    async fn record_active(
        &self,
        account_id: i64,
        device_id: u64,
        now_ms: u64,
    ) -> StorageResult<()> {
        // One of the login's writes: it rides in the writer's next batch
        // (one fsync shared with the other logins and messages) instead
        // of a transaction and fsync of its own under the connection lock.
        let (keep_from, sightings) = sightings(account_id, sql_id(device_id), now_ms);
        self.writer
            .submit(Isolation::Savepoint, move |tx| {
                (|| {
                    tx.prepare_cached("DELETE FROM analytics_seen WHERE period < ?1")?
                        .execute(params![keep_from])?;
                    for seen in sightings {
                        if !see(tx, seen.period, seen.kind, seen.id)? {
                            continue;
                        }
                        add(tx, seen.period, seen.metric, 1)?;
                        if !seen.cohort {
                            continue;
                        }
                        let created: Option<i64> = tx
                            .prepare_cached("SELECT created_at_ms FROM accounts WHERE id = ?1")?
                            .query_row(params![account_id], |r| r.get(0))
                            .optional()?;
                        if let Some(created) = created {
                            tx.prepare_cached(
                                "INSERT INTO analytics_cohorts (cohort_week, week, accounts) \
                                 VALUES (?1, ?2, 1) ON CONFLICT (cohort_week, week) \
                                 DO UPDATE SET accounts = accounts + 1",
                            )?
                            .execute(params![cohort_of(created), seen.period])?;
                        }
                    }
                    Ok(())
                })()
                .map_err(db)
            })
            .await
    }

    async fn add_counts(&self, day: i64, counts: &[(Metric, u64)]) -> StorageResult<()> {
        blocking(|| {
            if nonzero(counts).next().is_none() {
                return Ok(());
            }
            self.with_tx(|tx| {
                for (metric, n) in nonzero(counts) {
                    add(tx, day, metric, n).map_err(db)?;
                }
                Ok(())
            })
        })
    }

    async fn counts(&self, from_day: i64, to_day: i64) -> StorageResult<Vec<CountRow>> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut statement = tx
                    .prepare_cached(
                        "SELECT day, metric, value FROM analytics_counts \
                         WHERE day BETWEEN ?1 AND ?2 ORDER BY day, metric",
                    )
                    .map_err(db)?;
                let rows = statement
                    .query_map(params![from_day, to_day], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    })
                    .map_err(db)?;
                let mut out = Vec::new();
                for row in rows {
                    let (day, metric, value) = row.map_err(db)?;
                    // A metric a newer build wrote is not this build's to show.
                    if let Some(metric) = Metric::parse(&metric) {
                        out.push(CountRow {
                            day,
                            metric,
                            value: net_id(value),
                        });
                    }
                }
                Ok(out)
            })
        })
    }

    async fn cohorts(&self, from_day: i64) -> StorageResult<Vec<CohortRow>> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut statement = tx
                    .prepare_cached(
                        "SELECT cohort_week, week, accounts FROM analytics_cohorts \
                         WHERE cohort_week >= ?1 ORDER BY cohort_week, week",
                    )
                    .map_err(db)?;
                let rows = statement
                    .query_map(params![week_of(from_day)], |r| {
                        Ok(CohortRow {
                            cohort_week: r.get(0)?,
                            week: r.get(1)?,
                            accounts: net_id(r.get(2)?),
                        })
                    })
                    .map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)
            })
        })
    }

    async fn group_sizes(&self) -> StorageResult<Vec<(u64, u64)>> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut statement = tx
                    .prepare_cached(
                        "SELECT members, COUNT(*) FROM \
                         (SELECT COUNT(*) AS members FROM group_members GROUP BY group_id) \
                         GROUP BY members ORDER BY members",
                    )
                    .map_err(db)?;
                let rows = statement
                    .query_map([], |r| {
                        Ok((net_id(r.get::<_, i64>(0)?), net_id(r.get::<_, i64>(1)?)))
                    })
                    .map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)
            })
        })
    }
}
