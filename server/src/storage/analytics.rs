//! Content-free usage analytics (SPEC.md §14.1 "Analytics"): the
//! [`AnalyticsStorage`] half of the storage trait.
//!
//! What is kept, and nothing else:
//! - **Counters per UTC day** (`analytics_counts`, kept until deleted by
//!   the operator): [`Metric`] values such as envelopes accepted, group
//!   messages and attachment bytes, and the number of distinct accounts
//!   and devices that logged in that day; per week (Monday to Sunday, stored
//!   at the Monday) the distinct accounts and devices that logged in.
//! - **Working sets** (`analytics_seen`): which account and which device
//!   logged in on a day and in a week, so a second login is not counted
//!   twice. Rows older than [`SEEN_KEEP_DAYS`] days are deleted.
//! - **Retention cohorts** (`analytics_cohorts`): per registration week W
//!   and activity week W+k, how many accounts registered in W logged in
//!   during W+k — a count, never a list.
//!
//! Nothing names a sender, a recipient, a group or a pair: the group sizes
//! of a report are counted from the membership table at report time.
//!
//! Days are whole days since 1970-01-01 UTC ([`day_of`]); weeks start on
//! Monday and are named by their Monday ([`week_of`]).
//!
//! Not owned here: when counters are flushed (admin/analytics.rs), the
//! report's shape (admin/report.rs).

use super::StorageResult;

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;
/// Days the working sets of logins are kept.
pub const SEEN_KEEP_DAYS: i64 = 35;

/// A per-day (or per-week) counter of `analytics_counts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Envelopes accepted for one-to-one delivery, one per recipient device
    /// (sealed sends and own-device transcripts included).
    Messages,
    /// Group sends accepted, one per `SendGroup` whatever its fan-out.
    GroupMessages,
    /// Attachment bytes committed from uploads.
    AttachmentBytes,
    /// Distinct accounts with a device login that day.
    ActiveAccounts,
    /// Distinct devices that logged in that day.
    ActiveDevices,
    /// Distinct accounts with a device login that week (at the Monday).
    WeeklyActiveAccounts,
    /// Distinct devices that logged in that week (at the Monday).
    WeeklyActiveDevices,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 7] = [
        Metric::ActiveAccounts,
        Metric::ActiveDevices,
        Metric::WeeklyActiveAccounts,
        Metric::WeeklyActiveDevices,
        Metric::Messages,
        Metric::GroupMessages,
        Metric::AttachmentBytes,
    ];

    /// The stored and reported name.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Messages => "messages",
            Metric::GroupMessages => "group_messages",
            Metric::AttachmentBytes => "attachment_bytes",
            Metric::ActiveAccounts => "active_accounts",
            Metric::ActiveDevices => "active_devices",
            Metric::WeeklyActiveAccounts => "weekly_active_accounts",
            Metric::WeeklyActiveDevices => "weekly_active_devices",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Metric::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

/// One stored counter value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountRow {
    /// The day (a week's counters: its Monday).
    pub day: i64,
    /// What is counted.
    pub metric: Metric,
    /// The count.
    pub value: u64,
}

/// One cell of the retention table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CohortRow {
    /// Monday of the week the accounts registered in.
    pub cohort_week: i64,
    /// Monday of the week they logged in during.
    pub week: i64,
    /// How many of them did.
    pub accounts: u64,
}

/// The day (since 1970-01-01 UTC) of a time in ms since the epoch.
pub fn day_of(ms: u64) -> i64 {
    i64::try_from(ms / DAY_MS).unwrap_or(i64::MAX)
}

/// The Monday of the week holding `day` (1970-01-01 was a Thursday).
pub fn week_of(day: i64) -> i64 {
    day - (day + 3).rem_euclid(7)
}

/// `YYYY-MM-DD` of a day number (proleptic Gregorian, UTC).
pub fn format_day(day: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of a `YYYY-MM-DD` date; `None` unless it is exactly that
/// form and a real date from 1970 to 9999.
pub fn parse_day(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit())
    {
        return None;
    }
    let y: i64 = text[0..4].parse().ok()?;
    let m: i64 = text[5..7].parse().ok()?;
    let d: i64 = text[8..10].parse().ok()?;
    if y < 1970 || !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    // Hinnant's days_from_civil.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = era * 146_097 + doe - 719_468;
    // A day past the month's end (2026-02-30) comes back as another date.
    (format_day(day) == text).then_some(day)
}

/// One working-set row [`AnalyticsStorage::record_active`] inserts, and
/// what a new one counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sighting {
    /// The day, or the Monday of the week, it belongs to.
    pub period: i64,
    /// The `analytics_seen.kind` of the row.
    pub kind: i16,
    /// The account or device id (as stored).
    pub id: i64,
    /// The counter of `period` that gains one when the row is new.
    pub metric: Metric,
    /// A new row also adds one to the account's registration cohort for
    /// this week.
    pub cohort: bool,
}

/// What a login by `device` (stored id) of `account_id` at `now_ms`
/// records, in this order: the account and the device for the day, then
/// the device and the account for the week; and the first period whose
/// working-set rows are kept (older ones are deleted first).
pub(crate) fn sightings(account_id: i64, device: i64, now_ms: u64) -> (i64, [Sighting; 4]) {
    let day = day_of(now_ms);
    let week = week_of(day);
    let row = |period, kind, id, metric| Sighting {
        period,
        kind,
        id,
        metric,
        cohort: metric == Metric::WeeklyActiveAccounts,
    };
    (
        day - SEEN_KEEP_DAYS,
        [
            row(day, 0, account_id, Metric::ActiveAccounts),
            row(day, 1, device, Metric::ActiveDevices),
            row(week, 3, device, Metric::WeeklyActiveDevices),
            row(week, 2, account_id, Metric::WeeklyActiveAccounts),
        ],
    )
}

/// The cohort week of an account created at `created_at_ms` (as stored).
pub(crate) fn cohort_of(created_at_ms: i64) -> i64 {
    week_of(day_of(super::values::net_id(created_at_ms)))
}

/// A counter increment as stored, saturating.
pub(crate) fn count_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The counts of an [`AnalyticsStorage::add_counts`] call worth writing
/// (zero counts are skipped; none at all means no transaction).
pub(crate) fn nonzero(counts: &[(Metric, u64)]) -> impl Iterator<Item = (Metric, u64)> + '_ {
    counts.iter().copied().filter(|(_, n)| *n > 0)
}

/// Analytics operations of [`super::Storage`].
#[async_trait::async_trait]
pub trait AnalyticsStorage {
    /// Notes a device login at `now_ms`: the device and its account count
    /// as active that day and that week (once each), and the account's
    /// registration cohort gains one for this week when this is the
    /// account's first login of the week. Working-set rows older than
    /// [`SEEN_KEEP_DAYS`] days are deleted on the way.
    async fn record_active(
        &self,
        account_id: i64,
        device_id: u64,
        now_ms: u64,
    ) -> StorageResult<()>;
    /// Adds `counts` to the counters of `day` (zero counts are skipped).
    async fn add_counts(&self, day: i64, counts: &[(Metric, u64)]) -> StorageResult<()>;
    /// Every counter of the days `from_day..=to_day`, by day.
    async fn counts(&self, from_day: i64, to_day: i64) -> StorageResult<Vec<CountRow>>;
    /// Every retention cell of cohorts from the week of `from_day` on.
    async fn cohorts(&self, from_day: i64) -> StorageResult<Vec<CohortRow>>;
    /// The current groups by size: `(members, groups of that size)`,
    /// ascending by size.
    async fn group_sizes(&self) -> StorageResult<Vec<(u64, u64)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_weeks() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(format_day(20_427), "2025-12-05");
        assert_eq!(parse_day("2024-02-29"), Some(19_782));
        assert_eq!(format_day(19_782), "2024-02-29");
        for day in [0, 59, 60, 365, 11_016, 19_782, 2_932_896] {
            assert_eq!(parse_day(&format_day(day)), Some(day), "{day}");
        }
        for bad in [
            "",
            "2025-1-01",
            "2025-02-30",
            "2023-02-29",
            "1969-12-31",
            "2025/01/01",
            "2025-13-01",
            "2025-00-10",
            "+025-01-01",
            "2025-01-1x",
        ] {
            assert_eq!(parse_day(bad), None, "{bad:?}");
        }
        // 1970-01-01 was a Thursday: its week began Monday 1969-12-29.
        assert_eq!(week_of(0), -3);
        assert_eq!(format_day(week_of(20_427)), "2025-12-01");
        assert_eq!(week_of(week_of(20_427)), week_of(20_427));
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
        }
    }

    #[test]
    fn a_login_is_seen_per_day_and_week_and_the_weekly_account_makes_the_cohort() {
        let now = 20_000 * DAY_MS + 5;
        let (keep_from, rows) = sightings(7, 9, now);
        assert_eq!(keep_from, 20_000 - SEEN_KEEP_DAYS);
        let week = week_of(20_000);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.period, r.kind, r.id, r.metric, r.cohort))
            .collect();
        assert_eq!(
            got,
            vec![
                (20_000, 0, 7, Metric::ActiveAccounts, false),
                (20_000, 1, 9, Metric::ActiveDevices, false),
                (week, 3, 9, Metric::WeeklyActiveDevices, false),
                (week, 2, 7, Metric::WeeklyActiveAccounts, true),
            ]
        );
        assert_eq!(cohort_of(-1), week_of(0));
        assert_eq!(count_value(u64::MAX), i64::MAX);
        let counts = [(Metric::ActiveAccounts, 0), (Metric::ActiveDevices, 2)];
        assert_eq!(
            nonzero(&counts).collect::<Vec<_>>(),
            vec![(Metric::ActiveDevices, 2)]
        );
    }
}
