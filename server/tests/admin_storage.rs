//! The admin tables (SPEC.md §18.7) on SQLite and, when
//! `MICROBOT_TEST_POSTGRES` is set, PostgreSQL: names are unique, a TOTP
//! step is used once (also across two handles, "two nodes"), sessions are
//! found by token hash until they expire or their admin is removed, and
//! the audit log reads newest first; suspensions are seen by both handles
//! and named by their account; rate-limit overrides are shared, replaced
//! and removed; every node's chart minutes are shared, replaced,
//! pruned and read back by minute, then node.

use crate::support::engines;

use std::sync::Arc;

use engines::Schema;
use microbot_server::testing::storage::Storage;
use microbot_server::testing::storage::admin::{AdminRole, AuditEntry};
use microbot_server::testing::storage::postgres::PostgresStorage;
use microbot_server::testing::storage::sqlite::SqliteStorage;

/// A backend's name, two handles on one store, and what keeps it alive.
type Backend = (
    &'static str,
    Arc<dyn Storage>,
    Arc<dyn Storage>,
    Box<dyn std::any::Any>,
);

async fn backends(test: &str) -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let mut out: Vec<Backend> = vec![(
        "sqlite",
        Arc::new(SqliteStorage::open(&path).unwrap()),
        Arc::new(SqliteStorage::open(&path).unwrap()),
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
            out.push(("postgres", Arc::new(a), Arc::new(b), Box::new(schema)));
        }
        _ => eprintln!(
            "admin_storage::{test}: MICROBOT_TEST_POSTGRES is not set, skipped the PostgreSQL half"
        ),
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_sessions_and_audit_behave_the_same_on_every_backend() {
    for (name, a, b, _keep) in backends("admin_tables").await {
        assert!(
            a.create_admin("ops", AdminRole::Admin, "$argon2id$x", &[1; 20], 5)
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !b.create_admin("ops", AdminRole::Viewer, "$argon2id$y", &[2; 20], 6)
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            a.create_admin("watch", AdminRole::Viewer, "$argon2id$z", &[3; 20], 7)
                .await
                .unwrap()
        );
        let ops = b.admin_by_name("ops").await.unwrap().unwrap();
        assert_eq!(
            (ops.role, ops.active, ops.totp_secret.clone()),
            (AdminRole::Admin, false, vec![1; 20]),
            "{name}"
        );
        assert!(a.admin_by_name("nobody").await.unwrap().is_none());
        // One use per TOTP step, across both handles; earlier steps refused.
        assert!(
            a.consume_admin_totp_step(ops.id, 100).await.unwrap(),
            "{name}"
        );
        assert!(
            !b.consume_admin_totp_step(ops.id, 100).await.unwrap(),
            "{name}"
        );
        assert!(
            !a.consume_admin_totp_step(ops.id, 99).await.unwrap(),
            "{name}"
        );
        assert!(
            b.consume_admin_totp_step(ops.id, 101).await.unwrap(),
            "{name}"
        );
        // Sessions of inactive admins do not count.
        a.create_admin_session(&[9; 32], ops.id, 1_000, 10)
            .await
            .unwrap();
        assert!(
            b.admin_session(&[9; 32], 20).await.unwrap().is_none(),
            "{name}"
        );
        a.activate_admin(ops.id).await.unwrap();
        let s = b.admin_session(&[9; 32], 20).await.unwrap().unwrap();
        assert_eq!(
            (s.name.as_str(), s.role, s.expires_at_ms),
            ("ops", AdminRole::Admin, 1_000),
            "{name}"
        );
        assert!(
            b.admin_session(&[9; 32], 1_000).await.unwrap().is_none(),
            "expired: {name}"
        );
        assert!(b.admin_session(&[8; 32], 20).await.unwrap().is_none());
        // Creating a session sweeps expired ones; logout deletes one.
        a.create_admin_session(&[7; 32], ops.id, 5_000, 2_000)
            .await
            .unwrap();
        a.delete_admin_session(&[7; 32]).await.unwrap();
        assert!(a.admin_session(&[7; 32], 2_001).await.unwrap().is_none());
        a.create_admin_session(&[6; 32], ops.id, 5_000, 2_000)
            .await
            .unwrap();
        assert!(a.remove_admin("ops").await.unwrap(), "{name}");
        assert!(!a.remove_admin("ops").await.unwrap(), "{name}");
        assert!(
            b.admin_session(&[6; 32], 2_001).await.unwrap().is_none(),
            "removed admin's session: {name}"
        );
        for (i, action) in ["login", "ip_rule", "layout"].iter().enumerate() {
            a.append_audit(&AuditEntry {
                at_ms: 100 + i as u64,
                admin: "ops".into(),
                action: (*action).into(),
                detail: format!("change {i}"),
            })
            .await
            .unwrap();
        }
        let log = b.audit_log(2).await.unwrap();
        assert_eq!(log.len(), 2, "{name}");
        assert_eq!(
            (log[0].action.as_str(), log[0].at_ms),
            ("layout", 102),
            "{name}"
        );
        assert_eq!(log[1].detail, "change 1", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_are_per_admin_replaced_on_save_and_go_with_their_admin() {
    for (name, a, b, _keep) in backends("admin_layouts").await {
        a.create_admin("ops", AdminRole::Admin, "$argon2id$x", &[1; 20], 5)
            .await
            .unwrap();
        a.create_admin("watch", AdminRole::Viewer, "$argon2id$y", &[2; 20], 6)
            .await
            .unwrap();
        let ops = a.admin_by_name("ops").await.unwrap().unwrap().id;
        let watch = a.admin_by_name("watch").await.unwrap().unwrap().id;
        assert_eq!(a.admin_layout(ops).await.unwrap(), None, "{name}");
        a.set_admin_layout(ops, "chart:messages 2 2\n", 10)
            .await
            .unwrap();
        b.set_admin_layout(watch, "table:audit 1 1\n", 11)
            .await
            .unwrap();
        assert_eq!(
            b.admin_layout(ops).await.unwrap().as_deref(),
            Some("chart:messages 2 2\n"),
            "{name}"
        );
        // Saving again replaces (on either handle: another node).
        b.set_admin_layout(ops, "table:nodes 1 1\nchart:queue 3 1\n", 12)
            .await
            .unwrap();
        assert_eq!(
            a.admin_layout(ops).await.unwrap().as_deref(),
            Some("table:nodes 1 1\nchart:queue 3 1\n"),
            "{name}"
        );
        assert_eq!(
            a.admin_layout(watch).await.unwrap().as_deref(),
            Some("table:audit 1 1\n"),
            "{name}"
        );
        // Removing an admin removes its layout; a new admin of that name starts afresh.
        assert!(a.remove_admin("ops").await.unwrap());
        assert_eq!(b.admin_layout(ops).await.unwrap(), None, "{name}");
        a.create_admin("ops", AdminRole::Admin, "$argon2id$x", &[1; 20], 20)
            .await
            .unwrap();
        let again = a.admin_by_name("ops").await.unwrap().unwrap().id;
        assert_eq!(b.admin_layout(again).await.unwrap(), None, "{name}");
        assert!(b.admin_layout(watch).await.unwrap().is_some(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_rules_are_shared_by_every_handle_and_unique_by_block() {
    use microbot_server::testing::storage::admin::IpRuleRecord;
    for (name, a, b, _keep) in backends("admin_ip_rules").await {
        let rule = |cidr: &str, at: u64| IpRuleRecord {
            kind: "deny".into(),
            cidr: cidr.into(),
            created_by: "ops".into(),
            created_at_ms: at,
        };
        assert!(a.ip_rules().await.unwrap().is_empty(), "{name}");
        assert!(
            a.add_ip_rule(&rule("10.0.0.0/8", 20)).await.unwrap(),
            "{name}"
        );
        assert!(
            b.add_ip_rule(&rule("127.0.0.1/32", 10)).await.unwrap(),
            "{name}"
        );
        assert!(
            !b.add_ip_rule(&rule("10.0.0.0/8", 30)).await.unwrap(),
            "{name}"
        );
        assert_eq!(
            b.ip_rules().await.unwrap(),
            [rule("127.0.0.1/32", 10), rule("10.0.0.0/8", 20)],
            "{name}"
        );
        assert_eq!(
            b.remove_ip_rule("10.0.0.0/8").await.unwrap().as_deref(),
            Some("deny"),
            "{name}"
        );
        assert_eq!(
            a.remove_ip_rule("10.0.0.0/8").await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            a.ip_rules().await.unwrap(),
            [rule("127.0.0.1/32", 10)],
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_overrides_are_shared_replaced_and_removed_on_every_backend() {
    use microbot_server::testing::storage::admin::RateLimitRecord;
    for (name, a, b, _keep) in backends("admin_rate_limits").await {
        let record = |limit: &str, per_minute: u32, by: &str| RateLimitRecord {
            name: limit.into(),
            per_minute,
            updated_by: by.into(),
            updated_at_ms: 1_800_000_000_000,
        };
        assert!(a.rate_limits().await.unwrap().is_empty(), "{name}");
        a.set_rate_limit(&record("rate_send_per_account", 2, "ops"))
            .await
            .unwrap();
        b.set_rate_limit(&record("rate_login_per_ip", 0, "kim"))
            .await
            .unwrap();
        // Setting again replaces (the other handle sees it).
        b.set_rate_limit(&record("rate_send_per_account", 4_000_000_000, "kim"))
            .await
            .unwrap();
        assert_eq!(
            a.rate_limits().await.unwrap(),
            [
                record("rate_login_per_ip", 0, "kim"),
                record("rate_send_per_account", 4_000_000_000, "kim"),
            ],
            "{name}"
        );
        assert!(
            a.remove_rate_limit("rate_login_per_ip").await.unwrap(),
            "{name}"
        );
        assert!(
            !b.remove_rate_limit("rate_login_per_ip").await.unwrap(),
            "{name}"
        );
        assert_eq!(b.rate_limits().await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspensions_are_shared_and_named_on_every_backend() {
    use microbot_server::testing::storage::NewAccount;
    use microbot_server::testing::storage::suspension::SuspensionTarget;
    for (name, a, b, _keep) in backends("suspensions").await {
        let account = async |s: &Arc<dyn Storage>, username: &str| {
            let id = s
                .create_account(&NewAccount {
                    username,
                    password_hash: "$argon2id$stub",
                    totp_secret: &[7; 20],
                    recovery_code_hashes: &[],
                    now_ms: 1,
                    bot: false,
                })
                .await
                .unwrap();
            s.activate_account(id).await.unwrap();
            id
        };
        let bob = account(&a, "bob").await;
        let carol = account(&a, "carol").await;
        let phone = a.create_device(bob, &[1; 32], "phone", 2).await.unwrap();
        let laptop = a.create_device(bob, &[2; 32], "laptop", 2).await.unwrap();
        let carols = a.create_device(carol, &[3; 32], "one", 2).await.unwrap();
        assert_eq!(b.suspension_of(bob, phone).await.unwrap(), None, "{name}");
        // One node suspends a device; the other sees it, once.
        assert!(
            a.suspend(SuspensionTarget::Device(phone), "ops", 10)
                .await
                .unwrap()
        );
        assert!(
            !b.suspend(SuspensionTarget::Device(phone), "ops", 11)
                .await
                .unwrap()
        );
        assert_eq!(
            b.suspension_of(bob, phone).await.unwrap(),
            Some(SuspensionTarget::Device(phone)),
            "{name}"
        );
        assert_eq!(b.suspension_of(bob, laptop).await.unwrap(), None, "{name}");
        // An account suspension covers every device and is named first.
        assert!(
            b.suspend(SuspensionTarget::Account(carol), "root", 12)
                .await
                .unwrap()
        );
        assert_eq!(
            a.suspension_of(carol, carols).await.unwrap(),
            Some(SuspensionTarget::Account(carol)),
            "{name}"
        );
        assert!(
            a.suspend(SuspensionTarget::Account(bob), "ops", 13)
                .await
                .unwrap()
        );
        assert_eq!(
            a.suspension_of(bob, phone).await.unwrap(),
            Some(SuspensionTarget::Account(bob)),
            "{name}"
        );
        let listed: Vec<_> = b
            .suspensions()
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.target, s.username, s.created_by, s.created_at_ms))
            .collect();
        assert_eq!(
            listed,
            [
                (
                    SuspensionTarget::Device(phone),
                    "bob".into(),
                    "ops".into(),
                    10
                ),
                (
                    SuspensionTarget::Account(carol),
                    "carol".into(),
                    "root".into(),
                    12
                ),
                (
                    SuspensionTarget::Account(bob),
                    "bob".into(),
                    "ops".into(),
                    13
                ),
            ],
            "{name}"
        );
        // Lifting, once.
        assert!(b.unsuspend(SuspensionTarget::Account(bob)).await.unwrap());
        assert!(!a.unsuspend(SuspensionTarget::Account(bob)).await.unwrap());
        assert!(a.unsuspend(SuspensionTarget::Device(phone)).await.unwrap());
        assert_eq!(a.suspension_of(bob, phone).await.unwrap(), None, "{name}");
        // A deleted account's and a removed device's suspensions are dropped.
        assert!(
            a.suspend(SuspensionTarget::Device(laptop), "ops", 14)
                .await
                .unwrap()
        );
        assert_eq!(b.suspensions().await.unwrap().len(), 2, "{name}");
        a.delete_account(carol).await.unwrap();
        a.remove_device(bob, laptop).await.unwrap();
        assert_eq!(b.suspensions().await.unwrap(), [], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_minutes_are_shared_replaced_pruned_and_read_in_order_on_every_backend() {
    use microbot_server::testing::storage::admin::NodeMinuteRecord;
    for (name, a, b, _keep) in backends("node_minutes").await {
        let record = |node: &str, minute: u64, text: &str| NodeMinuteRecord {
            node: node.into(),
            minute,
            rollup: text.into(),
        };
        let day = 86_400u64;
        let now = 1_800_000_000u64 / 60 * 60;
        a.put_node_minute(&record("b", now, "b0"), now - 30 * day)
            .await
            .unwrap();
        b.put_node_minute(&record("a", now, "a0"), now - 30 * day)
            .await
            .unwrap();
        b.put_node_minute(&record("a", now - 60, "a-1"), now - 30 * day)
            .await
            .unwrap();
        // The same node and minute again replaces.
        a.put_node_minute(&record("b", now, "b0 again"), now - 30 * day)
            .await
            .unwrap();
        assert_eq!(
            b.node_minutes(None, now - 60, now + 60).await.unwrap(),
            [
                record("a", now - 60, "a-1"),
                record("a", now, "a0"),
                record("b", now, "b0 again"),
            ],
            "{name}"
        );
        assert_eq!(
            a.node_minutes(Some("b"), 0, now + 60).await.unwrap(),
            [record("b", now, "b0 again")],
            "{name}"
        );
        // The range is half-open.
        assert_eq!(
            a.node_minutes(None, now - 60, now).await.unwrap().len(),
            1,
            "{name}"
        );
        assert!(
            a.node_minutes(Some("c"), 0, u64::from(u32::MAX))
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        // A newer minute, keeping only from `now`: every node's older minutes go.
        a.put_node_minute(&record("c", now + 60, "c1"), now)
            .await
            .unwrap();
        assert_eq!(
            b.node_minutes(None, 0, now + 120).await.unwrap(),
            [
                record("a", now, "a0"),
                record("b", now, "b0 again"),
                record("c", now + 60, "c1"),
            ],
            "{name}"
        );
    }
}

/// A role name this build does not know (written by a newer build) reads
/// as a viewer, the least power, on every backend, rather than failing
/// the lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stored_role_reads_as_viewer_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let sqlite: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&path).unwrap());
    assert!(
        sqlite
            .create_admin("ops", AdminRole::Admin, "$argon2id$x", &[1; 20], 5)
            .await
            .unwrap()
    );
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE admins SET role = 'auditor' WHERE name = 'ops'", [])
        .unwrap();
    let ops = sqlite.admin_by_name("ops").await.unwrap().unwrap();
    assert_eq!(ops.role, AdminRole::Viewer, "sqlite");

    let Ok(url) = std::env::var("MICROBOT_TEST_POSTGRES") else {
        eprintln!(
            "admin_storage::unknown_role: MICROBOT_TEST_POSTGRES is not set, skipped the PostgreSQL half"
        );
        return;
    };
    if url.is_empty() {
        return;
    }
    let schema = Schema::new(&url, "t_unknown_role");
    let postgres: Arc<dyn Storage> = Arc::new(PostgresStorage::open(&schema.url, 2).await.unwrap());
    assert!(
        postgres
            .create_admin("ops", AdminRole::Admin, "$argon2id$x", &[1; 20], 5)
            .await
            .unwrap()
    );
    engines::admin(
        &url,
        &format!(
            "UPDATE {}.admins SET role = 'auditor' WHERE name = 'ops'",
            schema.name()
        ),
    )
    .unwrap();
    let ops = postgres.admin_by_name("ops").await.unwrap().unwrap();
    assert_eq!(ops.role, AdminRole::Viewer, "postgres");
}
