//! The usage report (SPEC.md §18.7 "Reports"): `GET /admin/api/report?
//! since=YYYY-MM-DD&format=json|csv` for any role, and `microbot-server
//! report --since YYYY-MM-DD --format csv|json` on the server's machine.
//! Both read the same stored analytics (SPEC.md §14.1) and print the same
//! report; the API first flushes this node's pending counts.
//!
//! Not owned here: what is stored (storage/analytics.rs).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::api::{Api, reader};
use super::error::AdminError;
use crate::storage::analytics::{Metric, day_of, format_day, parse_day, week_of};
use crate::storage::{Storage, StorageError};

/// The longest report, days.
pub const MAX_DAYS: i64 = 1096;

/// Upper bounds of the group-size buckets (the last one is open).
const SIZE_BUCKETS: [(u64, u64); 9] = [
    (1, 1),
    (2, 2),
    (3, 5),
    (6, 10),
    (11, 20),
    (21, 50),
    (51, 100),
    (101, 1000),
    (1001, u64::MAX),
];

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `since` is not a `YYYY-MM-DD` date.
    #[error("since must be a date YYYY-MM-DD")]
    BadDate,
    /// `since` is after today (UTC).
    #[error("since is in the future")]
    Future,
    /// `since` is more than [`MAX_DAYS`] days ago.
    #[error("a report covers at most {MAX_DAYS} days")]
    TooLong,
    /// The format is neither `json` nor `csv`.
    #[error("format must be json or csv")]
    BadFormat,
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How a report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object.
    Json,
    /// CSV rows `section,period,metric,value`.
    Csv,
}

impl Format {
    /// Parses `json` or `csv`.
    ///
    /// # Errors
    /// [`ReportError::BadFormat`].
    pub fn parse(text: &str) -> Result<Self, ReportError> {
        match text {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            _ => Err(ReportError::BadFormat),
        }
    }
}

/// Counts of one day or one week.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Period {
    /// `YYYY-MM-DD` (a week: its Monday).
    pub start: String,
    /// Distinct accounts that logged in.
    pub active_accounts: u64,
    /// Distinct devices that logged in.
    pub active_devices: u64,
    /// One-to-one envelopes accepted (one per recipient device).
    pub messages: u64,
    /// Group sends accepted.
    pub group_messages: u64,
    /// Attachment bytes uploaded.
    pub attachment_bytes: u64,
}

/// Groups of some sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SizeBucket {
    /// `1`, `3-5`, … or `1001+`.
    pub members: String,
    /// Groups with that many members now.
    pub groups: u64,
}

/// One registration week's retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cohort {
    /// Monday of the registration week.
    pub week: String,
    /// Accounts registered that week that logged in that week.
    pub accounts: u64,
    /// Element k: of those, how many logged in during week + k.
    pub active: Vec<u64>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// First day covered.
    pub since: String,
    /// Last day covered (today, UTC).
    pub until: String,
    /// When it was made, ms since the epoch.
    pub generated_at_ms: u64,
    /// One row per day, oldest first.
    pub days: Vec<Period>,
    /// One row per week (Monday to Sunday) from the week of `since`.
    pub weeks: Vec<Period>,
    /// The current groups by size.
    pub group_sizes: Vec<SizeBucket>,
    /// Retention of the accounts registered from the week of `since` on.
    pub cohorts: Vec<Cohort>,
}

/// Checks `since` against today (`now_ms`) and returns its day number.
///
/// # Errors
/// [`ReportError::BadDate`], [`ReportError::Future`],
/// [`ReportError::TooLong`].
pub fn since_day(since: &str, now_ms: u64) -> Result<i64, ReportError> {
    let day = parse_day(since).ok_or(ReportError::BadDate)?;
    let today = day_of(now_ms);
    if day > today {
        return Err(ReportError::Future);
    }
    if today - day >= MAX_DAYS {
        return Err(ReportError::TooLong);
    }
    Ok(day)
}

fn put(period: &mut Period, metric: Metric, value: u64) {
    match metric {
        Metric::ActiveAccounts => period.active_accounts = value,
        Metric::ActiveDevices => period.active_devices = value,
        Metric::Messages => period.messages += value,
        Metric::GroupMessages => period.group_messages += value,
        Metric::AttachmentBytes => period.attachment_bytes += value,
        Metric::WeeklyActiveAccounts | Metric::WeeklyActiveDevices => {}
    }
}

fn bucket_label((low, high): (u64, u64)) -> String {
    if high == u64::MAX {
        format!("{low}+")
    } else if low == high {
        low.to_string()
    } else {
        format!("{low}-{high}")
    }
}

/// Reads the report of the days `since..=today` from `storage`.
///
/// # Errors
/// [`ReportError::Storage`].
pub async fn build(storage: &dyn Storage, since: i64, now_ms: u64) -> Result<Report, ReportError> {
    let today = day_of(now_ms);
    let first_week = week_of(since);
    let rows = storage.counts(first_week, today).await?;
    let mut days: BTreeMap<i64, Period> = (since..=today)
        .map(|d| {
            (
                d,
                Period {
                    start: format_day(d),
                    ..Period::default()
                },
            )
        })
        .collect();
    let mut weeks: BTreeMap<i64, Period> = (first_week..=today)
        .step_by(7)
        .map(|w| {
            (
                w,
                Period {
                    start: format_day(w),
                    ..Period::default()
                },
            )
        })
        .collect();
    for row in rows {
        if let Some(day) = days.get_mut(&row.day) {
            put(day, row.metric, row.value);
        }
        if let Some(week) = weeks.get_mut(&week_of(row.day)) {
            match row.metric {
                Metric::WeeklyActiveAccounts => week.active_accounts = row.value,
                Metric::WeeklyActiveDevices => week.active_devices = row.value,
                Metric::Messages | Metric::GroupMessages | Metric::AttachmentBytes => {
                    put(week, row.metric, row.value);
                }
                Metric::ActiveAccounts | Metric::ActiveDevices => {}
            }
        }
    }
    let mut group_sizes: Vec<SizeBucket> = SIZE_BUCKETS
        .iter()
        .map(|b| SizeBucket {
            members: bucket_label(*b),
            groups: 0,
        })
        .collect();
    for (members, groups) in storage.group_sizes().await? {
        if let Some(i) = SIZE_BUCKETS
            .iter()
            .position(|(low, high)| (*low..=*high).contains(&members))
        {
            group_sizes[i].groups += groups;
        }
    }
    let this_week = week_of(today);
    let mut cohorts: BTreeMap<i64, Cohort> = BTreeMap::new();
    for row in storage.cohorts(since).await? {
        if row.week < row.cohort_week || row.week > this_week {
            continue;
        }
        let cohort = cohorts.entry(row.cohort_week).or_insert_with(|| Cohort {
            week: format_day(row.cohort_week),
            accounts: 0,
            active: vec![0; usize::try_from((this_week - row.cohort_week) / 7 + 1).unwrap_or(0)],
        });
        let k = usize::try_from((row.week - row.cohort_week) / 7).unwrap_or(usize::MAX);
        if let Some(cell) = cohort.active.get_mut(k) {
            *cell = row.accounts;
        }
        cohort.accounts = cohort.active.first().copied().unwrap_or(0);
    }
    Ok(Report {
        since: format_day(since),
        until: format_day(today),
        generated_at_ms: now_ms,
        days: days.into_values().collect(),
        weeks: weeks.into_values().collect(),
        group_sizes,
        cohorts: cohorts.into_values().collect(),
    })
}

/// The report as CSV: a header `section,period,metric,value`, then one
/// row per value (sections `day`, `week`, `group_sizes`, `cohort`).
pub fn to_csv(report: &Report) -> String {
    let mut out = String::from("section,period,metric,value\n");
    for (section, periods) in [("day", &report.days), ("week", &report.weeks)] {
        for p in periods {
            for (metric, value) in [
                ("active_accounts", p.active_accounts),
                ("active_devices", p.active_devices),
                ("messages", p.messages),
                ("group_messages", p.group_messages),
                ("attachment_bytes", p.attachment_bytes),
            ] {
                let _ = writeln!(out, "{section},{},{metric},{value}", p.start);
            }
        }
    }
    for b in &report.group_sizes {
        let _ = writeln!(out, "group_sizes,{},groups,{}", b.members, b.groups);
    }
    for c in &report.cohorts {
        for (k, n) in c.active.iter().enumerate() {
            let _ = writeln!(out, "cohort,{},week_{k},{n}", c.week);
        }
    }
    out
}

/// The report in `format`, with its media type.
pub fn render(report: &Report, format: Format) -> (&'static str, String) {
    match format {
        Format::Json => (
            "application/json",
            serde_json::to_string(report).unwrap_or_else(|_| "{}".to_owned()),
        ),
        Format::Csv => ("text/csv; charset=utf-8", to_csv(report)),
    }
}

/// Why `microbot-server report` failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportCliError {
    /// The arguments were refused.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The storage could not be opened.
    #[error(transparent)]
    Open(#[from] crate::storage::OpenStorageError),
    /// Standard output failed.
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

/// `microbot-server report --since DAY --format F`: writes the report of
/// the configured storage to `out`. Counts a running node has not flushed
/// yet (at most [`super::analytics::FLUSH_EVERY`] old) are not in it.
///
/// # Errors
/// [`ReportCliError`].
pub fn run_cli(
    config: &crate::config::Config,
    since: &str,
    format: &str,
    out: &mut dyn std::io::Write,
) -> Result<(), ReportCliError> {
    let format = Format::parse(format)?;
    let now = crate::clock::system_now_ms();
    let since = since_day(since, now)?;
    // The storage is async: this one-shot command (run from a plain
    // thread) drives it on a current-thread runtime of its own.
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let storage = crate::storage::open(config).await?;
            Ok::<_, ReportCliError>(build(&*storage, since, now).await?)
        })?;
    let (_, body) = render(&report, format);
    out.write_all(body.as_bytes())?;
    if !body.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The query of `GET /admin/api/report`.
#[derive(Deserialize)]
pub(super) struct ReportQuery {
    /// First day, `YYYY-MM-DD`.
    since: String,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// `GET /admin/api/report?since=…&format=…` (any role).
pub(super) async fn get_report(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    reader(&api, &headers).await?;
    let Query(query) = query.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    let bad = |e: ReportError| AdminError::BadRequest(e.to_string());
    let format = Format::parse(query.format.as_deref().unwrap_or("json")).map_err(bad)?;
    let now = api.state.now_ms();
    let since = since_day(&query.since, now).map_err(bad)?;
    api.analytics.flush(&api.state).await?;
    let report = build(&*api.state.storage, since, now)
        .await
        .map_err(|e| match e {
            ReportError::Storage(e) => AdminError::Storage(e),
            other => bad(other),
        })?;
    let (media_type, body) = render(&report, format);
    let extension = if format == Format::Csv { "csv" } else { "json" };
    let disposition = format!(
        "attachment; filename=\"microbot-report-{}-{}.{extension}\"",
        report.since, report.until
    );
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(|e| AdminError::Internal(e.to_string()))?,
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::analytics::DAY_MS;

    #[test]
    fn since_is_checked() {
        let now = 20_427 * DAY_MS + 5; // 2025-12-05
        assert_eq!(since_day("2025-12-05", now).unwrap(), 20_427);
        assert_eq!(since_day("2025-01-01", now).unwrap(), 20_089);
        assert!(matches!(
            since_day("2025-12-06", now),
            Err(ReportError::Future)
        ));
        assert!(matches!(
            since_day("2020-01-01", now),
            Err(ReportError::TooLong)
        ));
        assert!(matches!(
            since_day("05.12.2025", now),
            Err(ReportError::BadDate)
        ));
        assert!(matches!(Format::parse("xml"), Err(ReportError::BadFormat)));
        assert_eq!(bucket_label((3, 5)), "3-5");
        assert_eq!(bucket_label((2, 2)), "2");
        assert_eq!(bucket_label((1001, u64::MAX)), "1001+");
    }
}
