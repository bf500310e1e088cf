//! `microbot history` against a real server: pages back with the printed
//! cursor (stable while new messages arrive), the delivery state of our
//! own messages, and the errors for a damaged or foreign cursor.
use crate::common;

use common::*;

fn page(cli: &Cli, profile: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["history", "--json"];
    all.extend_from_slice(args);
    let out = cli.run(profile, &all).ok();
    let lines = out.json_lines();
    assert_eq!(lines.len(), 1, "{out:#?}");
    lines.into_iter().next().unwrap()
}

fn texts(page: &serde_json::Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

fn states(page: &serde_json::Value) -> Vec<serde_json::Value> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["delivery"]["state"].clone())
        .collect()
}

#[test]
fn history_pages_back_with_the_printed_cursor_and_shows_delivery() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    cli.register("alice");
    cli.register("bob");
    cli.register("carol");
    for text in ["one", "two", "three"] {
        cli.run("alice", &["send", "bob", text]).ok();
    }

    let newest = page(&cli, "alice", &["bob", "--limit", "2"]);
    assert_eq!(newest["type"], "history");
    assert_eq!(newest["conversation"]["username"], "bob");
    assert_eq!(texts(&newest), ["two", "three"]);
    assert_eq!(states(&newest), ["sent", "sent"]);
    let cursor = newest["older"].as_str().expect("older messages").to_owned();
    let older = page(&cli, "alice", &["bob", "--before", &cursor]);
    assert_eq!(texts(&older), ["one"]);
    assert_eq!(older["older"], serde_json::Value::Null);

    // For people: the messages, then the command for the older page.
    let human = cli.run("alice", &["history", "bob", "--limit", "2"]).ok();
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{human:#?}");
    assert!(lines[0].starts_with("alice: two  (id "), "{human:#?}");
    assert!(lines[0].ends_with("[sent]"), "{human:#?}");
    assert_eq!(
        lines[2],
        format!("older: microbot history bob --before {cursor}")
    );

    // Bob receives them (a delivery receipt each, sent ahead of his reply).
    let got = cli.recv("bob", "message", 3);
    assert_eq!(got.len(), 3);
    cli.run("bob", &["send", "alice", "thanks"]).ok();
    let got = cli.recv("alice", "message", 1);
    assert_eq!(got[0]["text"], "thanks");

    // The cursor still names the same page; Alice's message reached Bob.
    let older = page(&cli, "alice", &["bob", "--before", &cursor]);
    assert_eq!(texts(&older), ["one"]);
    assert_eq!(states(&older), ["delivered"]);
    assert_eq!(older["messages"][0]["delivery"]["delivered_to"][0], "bob");
    let newest = page(&cli, "alice", &["bob", "--limit", "1"]);
    assert_eq!(texts(&newest), ["thanks"]);
    assert_eq!(newest["messages"][0]["from"], "bob");
    assert_eq!(newest["messages"][0]["delivery"], serde_json::Value::Null);
    let human = cli.run("alice", &["history", "bob", "--limit", "4"]).ok();
    assert!(
        human.stdout.contains("alice: three  (id ") && human.stdout.contains("[delivered to bob]"),
        "{human:#?}"
    );

    // A damaged cursor is a usage error; another conversation's is refused.
    let out = cli.run("alice", &["history", "bob", "--before", "h1-12"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("cursor"), "{out:#?}");
    for text in ["c1", "c2"] {
        cli.run("alice", &["send", "carol", text]).ok();
    }
    let carol = page(&cli, "alice", &["carol", "--limit", "1"]);
    let foreign = carol["older"].as_str().unwrap();
    let out = cli.run("alice", &["history", "bob", "--before", foreign]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("another conversation"), "{out:#?}");
}
