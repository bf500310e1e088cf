//! The ready-made monitoring files in `docs/monitoring/` (a Grafana
//! dashboard and Prometheus alert rules), and the autoscaler of
//! `docs/deploy/kubernetes.yaml`, name only series, labels and label
//! values that a live node's `/metrics` exports (SPEC.md §18.3), so a renamed
//! metric breaks this test instead of an operator's alert.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::*;

fn monitoring_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring")
}

/// Every `microbot_*` / `process_*` series named in `text`, with a
/// histogram's `_bucket`/`_sum`/`_count` suffix kept (checked against the
/// exposition as written).
fn series_named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["microbot_", "process_"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(prefix) {
            let start = from + at;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
                end += 1;
            }
            let before = start.checked_sub(1).map(|i| bytes[i]);
            let inside_word = before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !inside_word {
                names.insert(text[start..end].to_owned());
            }
            from = end;
        }
    }
    names
}

/// Label names used in `by (…)` groupings, except Prometheus' own.
fn grouping_labels(text: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for part in text.split("by (").skip(1) {
        let inside = part.split(')').next().unwrap_or_default();
        for label in inside.split(',').map(str::trim) {
            if !["instance", "le", "job"].contains(&label) && !label.is_empty() {
                labels.insert(label.to_owned());
            }
        }
    }
    labels
}

/// `name{label="value"}` selectors with a fixed value (not `=~`).
fn fixed_selectors(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for name in series_named(text) {
        let open = format!("{name}{{");
        for part in text.split(&open).skip(1) {
            let inside = part.split('}').next().unwrap_or_default();
            for matcher in inside.split(',') {
                if let Some((label, value)) = matcher.split_once("=\"")
                    && !label.ends_with('~')
                    && !label.ends_with('!')
                {
                    found.insert(format!("{name}{{{label}=\"{value}"));
                }
            }
        }
    }
    found
}

fn exported(body: &str, series: &str) -> bool {
    body.lines().any(|line| {
        line.strip_prefix(series)
            .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
    })
}

#[tokio::test]
async fn the_grafana_dashboard_and_alert_rules_name_only_exported_series() {
    let dir = monitoring_dir();
    let dashboard_text = std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap();
    let alerts = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();

    // The dashboard is valid JSON with a query in every panel, and ids and
    // grid cells that do not collide.
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard_text).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "a dashboard worth importing");
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let mut expressions = String::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "unique panel ids"
        );
        let grid = &panel["gridPos"];
        let (x, y, w, h) = (
            grid["x"].as_u64().unwrap(),
            grid["y"].as_u64().unwrap(),
            grid["w"].as_u64().unwrap(),
            grid["h"].as_u64().unwrap(),
        );
        assert!(
            x + w <= 24,
            "panel {} fits the 24-column grid",
            panel["title"]
        );
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "panel {} overlaps another",
                    panel["title"]
                );
            }
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty());
        for target in targets {
            expressions.push_str(target["expr"].as_str().expect("expr"));
            expressions.push('\n');
        }
    }

    // Every alert rule has its parts.
    let rules: Vec<&str> = alerts.split("- alert: ").skip(1).collect();
    assert!(rules.len() >= 8, "the usual failure modes have a rule");
    for rule in &rules {
        for field in [
            "expr: ",
            "for: ",
            "severity: ",
            "summary: ",
            "description: ",
        ] {
            assert!(rule.contains(field), "rule {rule} lacks {field}");
        }
    }

    // A node exports the labelled series once there was traffic: a send,
    // a fetch and a send refused by a limit.
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.rate_send_per_account = 1;
    })
    .await;
    let mut alice = new_device(&server, "alice").await;
    let bob = new_device(&server, "bob").await;
    let envelope = [(bob.device_id, bytes::Bytes::from_static(b"ct"))];
    send_to(&mut alice.client, &envelope).await;
    let refused = alice
        .client
        .request_err(microbot_protocol::transport::client_frame::Request::Send(
            microbot_protocol::transport::SendRequest {
                envelopes: vec![microbot_protocol::transport::OutgoingEnvelope {
                    recipient_device_id: bob.device_id,
                    ciphertext: bytes::Bytes::from_static(b"x"),
                }],
                complete_accounts: Vec::new(),
            },
        ))
        .await;
    assert_eq!(
        code(&refused),
        microbot_protocol::transport::ErrorCode::RateLimited
    );
    let _ = fetch(&mut alice.client).await;
    let (status, body) = http_get(server.metrics_addr.unwrap(), "/metrics").await;
    assert_eq!(status, 200);

    // The autoscaler's metric in the Kubernetes example too.
    let deploy =
        std::fs::read_to_string(monitoring_dir().join("../deploy/kubernetes.yaml")).unwrap();
    assert!(
        deploy.contains("metric: {name: microbot_"),
        "the HPA scales on a node series"
    );
    let both = format!("{expressions}\n{alerts}\n{deploy}");
    let names = series_named(&both);
    assert!(
        names.len() >= 15,
        "the files use the server's series: {names:?}"
    );
    for name in &names {
        assert!(
            exported(&body, name),
            "{name} is named in docs/monitoring but not exported:\n{body}"
        );
    }
    for label in grouping_labels(&both) {
        assert!(
            body.contains(&format!("{label}=\"")),
            "label {label} is not exported"
        );
    }
    for selector in fixed_selectors(&both) {
        assert!(body.contains(&selector), "{selector}\" is not exported");
    }
    server.stop().await;
}
