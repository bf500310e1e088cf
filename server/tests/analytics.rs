//! Usage analytics (SPEC.md §14.1 "Analytics", §18.7 "Reports") on SQLite
//! and, when `MICROBOT_TEST_POSTGRES` is set, PostgreSQL: a login counts
//! its device and account once per day and per week across two handles
//! ("two nodes"), counters add up, cohorts count an account's first login
//! of a week in its registration week's row, group sizes come from the
//! membership table, working sets are pruned after 35 days, and
//! `microbot-server report` prints the stored counts as JSON and CSV.

use crate::common;
use crate::support::engines;

use std::process::Command;
use std::sync::Arc;

use engines::Schema;
use microbot_server::admin::report;
use microbot_server::testing::storage::analytics::{DAY_MS, Metric, day_of, format_day, week_of};
use microbot_server::testing::storage::postgres::PostgresStorage;
use microbot_server::testing::storage::sqlite::SqliteStorage;
use microbot_server::testing::storage::{NewAccount, Storage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_an_admin_listener_still_counts_messages() {
    let server = common::TestServer::start_with(|c| c.metrics_listen = None).await;
    let mut alice = common::new_device(&server, "alice").await;
    let bob = common::new_device(&server, "bob").await;
    for i in 0..3u8 {
        let r = common::send_to(
            &mut alice.client,
            &[(bob.device_id, bytes::Bytes::from(vec![i; 8]))],
        )
        .await;
        assert!(
            matches!(r, microbot_protocol::transport::response::Result::Send(_)),
            "{r:?}"
        );
    }
    // Stopping flushes what was counted since the last 10 s tick.
    let dir = server.stop_keep_dir().await;
    let storage = SqliteStorage::open(&dir.path().join("microbot.sqlite3")).unwrap();
    let today = day_of(microbot_server::testing::clock::system_now_ms());
    assert!(value(&storage, today, Metric::Messages).await >= 3);
}

/// A backend's name, two handles on one store, the CLI's storage
/// arguments, and what keeps it alive.
type Backend = (
    &'static str,
    Arc<dyn Storage>,
    Arc<dyn Storage>,
    Vec<String>,
    Box<dyn std::any::Any>,
);

async fn backends(test: &str) -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("microbot.sqlite3");
    let args = vec!["--data-dir".to_owned(), dir.path().display().to_string()];
    let mut out: Vec<Backend> = vec![(
        "sqlite",
        Arc::new(SqliteStorage::open(&path).unwrap()),
        Arc::new(SqliteStorage::open(&path).unwrap()),
        args,
        Box::new(dir),
    )];
    match std::env::var("MICROBOT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let schema = Schema::new(&url, &format!("t_{test}"));
            let a = PostgresStorage::open(&schema.url, 2)
                .await
                .expect("open postgres");
            let b = PostgresStorage::open(&schema.url, 2)
                .await
                .expect("open postgres again");
            let data = tempfile::tempdir().unwrap();
            let args = vec![
                "--data-dir".to_owned(),
                data.path().display().to_string(),
                "--storage".to_owned(),
                schema.url.clone(),
            ];
            out.push((
                "postgres",
                Arc::new(a),
                Arc::new(b),
                args,
                Box::new((schema, data)),
            ));
        }
        _ => eprintln!(
            "analytics::{test}: MICROBOT_TEST_POSTGRES is not set, skipped the PostgreSQL half"
        ),
    }
    out
}

async fn account(s: &dyn Storage, username: &str, created_ms: u64) -> i64 {
    let id = s
        .create_account(&NewAccount {
            username,
            password_hash: "$argon2id$stub",
            totp_secret: &[7; 20],
            recovery_code_hashes: &[],
            now_ms: created_ms,
            bot: false,
        })
        .await
        .unwrap();
    s.activate_account(id).await.unwrap();
    id
}

async fn value(s: &dyn Storage, day: i64, metric: Metric) -> u64 {
    s.counts(day, day)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.day == day && r.metric == metric)
        .map_or(0, |r| r.value)
}

/// Now, rounded down to a Wednesday noon so "same week" holds for ±2 days.
fn wednesday_noon() -> u64 {
    let today = day_of(microbot_server::testing::clock::system_now_ms());
    let wednesday = week_of(today) + 2;
    let wednesday = if wednesday > today {
        wednesday - 7
    } else {
        wednesday
    };
    u64::try_from(wednesday).unwrap() * DAY_MS + DAY_MS / 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_counters_cohorts_and_group_sizes() {
    for (name, a, b, _, _keep) in backends("analytics_tables").await {
        let now = wednesday_noon();
        let day = day_of(now);
        let week = week_of(day);
        // Alice registered two weeks earlier, Bob this week.
        let alice = account(&*a, "alice", now - 14 * DAY_MS).await;
        let bob = account(&*a, "bob", now - DAY_MS).await;
        let carol = account(&*a, "carol", now - DAY_MS).await;
        let alice_1 = a.create_device(alice, &[1; 32], "one", now).await.unwrap();
        let alice_2 = a.create_device(alice, &[2; 32], "two", now).await.unwrap();
        let bob_1 = a.create_device(bob, &[3; 32], "one", now).await.unwrap();
        // Two nodes record the same logins: each counts once.
        for s in [&a, &b] {
            s.record_active(alice, alice_1, now).await.unwrap();
            s.record_active(alice, alice_2, now + 1000).await.unwrap();
            s.record_active(bob, bob_1, now + 2000).await.unwrap();
        }
        // Alice again the next day, same week: a new day, not a new week.
        a.record_active(alice, alice_1, now + DAY_MS).await.unwrap();
        assert_eq!(value(&*a, day, Metric::ActiveAccounts).await, 2, "{name}");
        assert_eq!(value(&*b, day, Metric::ActiveDevices).await, 3, "{name}");
        assert_eq!(
            value(&*a, day + 1, Metric::ActiveAccounts).await,
            1,
            "{name}"
        );
        assert_eq!(
            value(&*a, day + 1, Metric::ActiveDevices).await,
            1,
            "{name}"
        );
        assert_eq!(
            value(&*a, week, Metric::WeeklyActiveAccounts).await,
            2,
            "{name}"
        );
        assert_eq!(
            value(&*a, week, Metric::WeeklyActiveDevices).await,
            3,
            "{name}"
        );
        // Alice's cohort is two weeks back; Bob's is this week.
        let cohorts = a.cohorts(week - 14).await.unwrap();
        let cell = |c: i64, w: i64| {
            cohorts
                .iter()
                .find(|r| r.cohort_week == c && r.week == w)
                .map_or(0, |r| r.accounts)
        };
        assert_eq!(cell(week - 14, week), 1, "{name}: {cohorts:?}");
        assert_eq!(cell(week, week), 1, "{name}: {cohorts:?}");
        assert_eq!(cohorts.len(), 2, "{name}: {cohorts:?}");
        // Counters from two nodes add up; zero counts write nothing.
        a.add_counts(day, &[(Metric::Messages, 5), (Metric::GroupMessages, 0)])
            .await
            .unwrap();
        b.add_counts(
            day,
            &[(Metric::Messages, 2), (Metric::AttachmentBytes, 900)],
        )
        .await
        .unwrap();
        assert_eq!(value(&*a, day, Metric::Messages).await, 7, "{name}");
        assert_eq!(
            value(&*a, day, Metric::AttachmentBytes).await,
            900,
            "{name}"
        );
        assert!(
            !a.counts(day, day)
                .await
                .unwrap()
                .iter()
                .any(|r| r.metric == Metric::GroupMessages),
            "{name}"
        );
        // Group sizes: one group of 3, one of 2.
        a.create_group(
            &[1; 16],
            alice,
            &["bob".into(), "carol".into()],
            b"m",
            100,
            now,
        )
        .await
        .unwrap();
        a.create_group(&[2; 16], carol, &["bob".into()], b"m", 100, now)
            .await
            .unwrap();
        assert_eq!(
            b.group_sizes().await.unwrap(),
            vec![(2, 1), (3, 1)],
            "{name}"
        );
        // The report puts it together.
        let built = report::build(&*a, week - 14, now + DAY_MS).await.unwrap();
        let today = built.days.last().unwrap();
        assert_eq!(today.start, format_day(day + 1), "{name}");
        let first = built
            .days
            .iter()
            .find(|d| d.start == format_day(day))
            .unwrap();
        assert_eq!(
            (first.active_accounts, first.active_devices, first.messages),
            (2, 3, 7),
            "{name}"
        );
        let this_week = built.weeks.last().unwrap();
        assert_eq!(
            (
                this_week.start.clone(),
                this_week.active_accounts,
                this_week.attachment_bytes
            ),
            (format_day(week), 2, 900),
            "{name}"
        );
        assert_eq!(built.cohorts.len(), 2, "{name}");
        assert_eq!(built.cohorts[0].active, vec![0, 0, 1], "{name}");
        assert_eq!(built.cohorts[1].active, vec![1], "{name}");
        let sizes: Vec<_> = built
            .group_sizes
            .iter()
            .filter(|g| g.groups > 0)
            .map(|g| (g.members.as_str(), g.groups))
            .collect();
        assert_eq!(sizes, vec![("2", 1), ("3-5", 1)], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_sets_are_pruned_after_35_days() {
    for (name, a, _, _, _keep) in backends("analytics_prune").await {
        let now = wednesday_noon() - 40 * DAY_MS;
        let day = day_of(now);
        let alice = account(&*a, "alice", now).await;
        let device = a.create_device(alice, &[1; 32], "one", now).await.unwrap();
        a.record_active(alice, device, now).await.unwrap();
        a.record_active(alice, device, now).await.unwrap();
        assert_eq!(value(&*a, day, Metric::ActiveDevices).await, 1, "{name}");
        // A login 36 days later deletes the old working set, so the same
        // day's login would count again; the counter itself stays.
        a.record_active(alice, device, now + 36 * DAY_MS)
            .await
            .unwrap();
        assert_eq!(value(&*a, day, Metric::ActiveDevices).await, 1, "{name}");
        a.record_active(alice, device, now).await.unwrap();
        assert_eq!(value(&*a, day, Metric::ActiveDevices).await, 2, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_command_prints_json_and_csv() {
    for (name, a, _, args, _keep) in backends("analytics_cli").await {
        let now = microbot_server::testing::clock::system_now_ms();
        let today = day_of(now);
        let alice = account(&*a, "alice", now).await;
        let device = a.create_device(alice, &[1; 32], "one", now).await.unwrap();
        a.record_active(alice, device, now).await.unwrap();
        a.add_counts(today, &[(Metric::Messages, 12), (Metric::GroupMessages, 4)])
            .await
            .unwrap();
        drop(a);
        let since = format_day(today - 2);
        let run = |extra: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_microbot-server"))
                .args(&args)
                .arg("report")
                .args(extra)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8(out.stdout).unwrap(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, json, err) = run(&["--since", &since, "--format", "json"]);
        assert!(ok, "{name}: {err}");
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["since"], since.as_str(), "{name}");
        assert_eq!(json["until"], format_day(today).as_str(), "{name}");
        let days = json["days"].as_array().unwrap();
        assert_eq!(days.len(), 3, "{name}");
        assert_eq!(days[2]["messages"], 12, "{name}");
        assert_eq!(days[2]["group_messages"], 4, "{name}");
        assert_eq!(days[2]["active_accounts"], 1, "{name}");
        assert_eq!(days[0]["messages"], 0, "{name}");
        let (ok, csv, err) = run(&["--since", &since, "--format", "csv"]);
        assert!(ok, "{name}: {err}");
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("section,period,metric,value"), "{name}");
        let row = format!("day,{},messages,12", format_day(today));
        assert!(csv.lines().any(|l| l == row), "{name}: {csv}");
        let row = format!("day,{},group_messages,4", format_day(today));
        assert!(csv.lines().any(|l| l == row), "{name}: {csv}");
        assert!(csv.lines().all(|l| l.split(',').count() == 4), "{name}");
        // Bad arguments are refused with a reason, not a crash.
        for (bad, reason) in [
            (vec!["--since", "2025-02-30"], "YYYY-MM-DD"),
            (vec!["--since", "1999-01-01"], "at most"),
            (vec!["--since", &since, "--format", "xml"], "json or csv"),
        ] {
            let (ok, _, err) = run(&bad);
            assert!(!ok && err.contains(reason), "{name}: {bad:?}: {err}");
        }
    }
}
