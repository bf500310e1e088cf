//! PostgreSQL implementation of [`AnalyticsStorage`] (SPEC.md §14.1
//! "Analytics"), the same rules as the SQLite one.

use super::{PgResult, PostgresStorage, Tx, col, net_id, sql_id};
use crate::storage::StorageResult;
use crate::storage::analytics::{
    AnalyticsStorage, CohortRow, CountRow, Metric, cohort_of, count_value, nonzero, sightings,
    week_of,
};

/// Inserts one working-set row; `true` when it is new.
async fn see(tx: &Tx<'_, '_>, period: i64, kind: i16, id: i64) -> PgResult<bool> {
    let n = tx
        .execute(
            "INSERT INTO analytics_seen (period, kind, id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&period, &kind, &id],
        )
        .await?;
    Ok(n == 1)
}

async fn add(tx: &Tx<'_, '_>, day: i64, metric: Metric, n: u64) -> PgResult<()> {
    tx.execute(
        "INSERT INTO analytics_counts (day, metric, value) VALUES ($1, $2, $3) \
         ON CONFLICT (day, metric) DO UPDATE SET value = analytics_counts.value + EXCLUDED.value",
        &[&day, &metric.as_str(), &count_value(n)],
    )
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl AnalyticsStorage for PostgresStorage {
    async fn record_active(
        &self,
        account_id: i64,
        device_id: u64,
        now_ms: u64,
    ) -> StorageResult<()> {
        let (keep_from, sightings) = sightings(account_id, sql_id(device_id), now_ms);
        with_tx!(self, |tx| async {
            tx.execute(
                "DELETE FROM analytics_seen WHERE period < $1",
                &[&keep_from],
            )
            .await?;
            for seen in sightings {
                if !see(tx, seen.period, seen.kind, seen.id).await? {
                    continue;
                }
                add(tx, seen.period, seen.metric, 1).await?;
                if !seen.cohort {
                    continue;
                }
                let created = tx
                    .query_opt(
                        "SELECT created_at_ms FROM accounts WHERE id = $1",
                        &[&account_id],
                    )
                    .await?;
                if let Some(row) = created {
                    tx.execute(
                        "INSERT INTO analytics_cohorts (cohort_week, week, accounts) \
                         VALUES ($1, $2, 1) ON CONFLICT (cohort_week, week) \
                         DO UPDATE SET accounts = analytics_cohorts.accounts + 1",
                        &[&cohort_of(col(&row, 0)?), &seen.period],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }

    async fn add_counts(&self, day: i64, counts: &[(Metric, u64)]) -> StorageResult<()> {
        if nonzero(counts).next().is_none() {
            return Ok(());
        }
        with_tx!(self, |tx| async {
            for (metric, n) in nonzero(counts) {
                add(tx, day, metric, n).await?;
            }
            Ok(())
        })
    }

    async fn counts(&self, from_day: i64, to_day: i64) -> StorageResult<Vec<CountRow>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT day, metric, value FROM analytics_counts \
                     WHERE day BETWEEN $1 AND $2 ORDER BY day, metric",
                    &[&from_day, &to_day],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                // A metric a newer build wrote is not this build's to show.
                if let Some(metric) = Metric::parse(col::<&str>(r, 1)?) {
                    out.push(CountRow {
                        day: col(r, 0)?,
                        metric,
                        value: net_id(col(r, 2)?),
                    });
                }
            }
            Ok(out)
        })
    }

    async fn cohorts(&self, from_day: i64) -> StorageResult<Vec<CohortRow>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT cohort_week, week, accounts FROM analytics_cohorts \
                     WHERE cohort_week >= $1 ORDER BY cohort_week, week",
                    &[&week_of(from_day)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(CohortRow {
                        cohort_week: col(r, 0)?,
                        week: col(r, 1)?,
                        accounts: net_id(col(r, 2)?),
                    })
                })
                .collect()
        })
    }

    async fn group_sizes(&self) -> StorageResult<Vec<(u64, u64)>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT members, COUNT(*) FROM \
                     (SELECT COUNT(*) AS members FROM group_members GROUP BY group_id) AS sizes \
                     GROUP BY members ORDER BY members",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((net_id(col(r, 0)?), net_id(col(r, 1)?))))
                .collect()
        })
    }
}
