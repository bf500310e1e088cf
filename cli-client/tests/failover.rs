//! One-shot commands of the real `microbot` binary fail over (issue 24):
//! with `--server DEAD,LIVE`, users whose start node (SPEC.md §12.1) is
//! the dead one still send, receive and chat through the live node,
//! instead of giving up on the first node's handshake timeout. A node is
//! "dead" as a killed host is: its UDP port swallows packets and nothing
//! answers.
use crate::common;

use std::net::UdpSocket;

use common::*;
use microbot_client::config::start_index;

/// A username starting with `prefix` whose device `device_id` starts at
/// index 0 of a two-address list.
fn starting_at_first(prefix: &str, device_id: u64) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|name| start_index(name, device_id, 2) == 0)
        .unwrap()
}

/// The ids `devices` lists, with the one marked as this device.
fn own_device_id(cli: &Cli, profile: &str) -> u64 {
    let out = cli.run(profile, &["devices"]).ok();
    let line = out
        .stdout
        .lines()
        .find(|line| line.contains("this device"))
        .unwrap_or_else(|| panic!("{out:#?}"));
    line.split('\t').next().unwrap().trim().parse().unwrap()
}

#[test]
fn one_shot_commands_move_past_a_dead_start_node() {
    let live = TestServer::start();
    // Bound and never read: packets to it vanish, as to a killed host.
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let mut cli = Cli::new(&live);
    cli.server = format!("{dead_addr},{}", live.addr);

    // A fresh server numbers devices 1, 2, … in order of enrolment.
    let alice = starting_at_first("alice", 1);
    let bob = starting_at_first("bob", 2);
    cli.register(&alice);
    cli.register(&bob);
    assert_eq!(own_device_id(&cli, &alice), 1);
    assert_eq!(own_device_id(&cli, &bob), 2);

    let out = cli.run(&alice, &["send", &bob, "through the other node"]);
    assert_eq!(out.code, 0, "send did not fail over: {out:#?}");
    let id = out.stdout.trim().to_owned();

    let out = cli.run(
        &bob,
        &[
            "recv",
            "--json",
            "--only",
            "message",
            "--count",
            "1",
            "--timeout",
            "30",
        ],
    );
    assert_eq!(out.code, 0, "recv did not fail over: {out:#?}");
    let got = out.json_lines();
    assert_eq!(got[0]["text"], "through the other node");
    assert_eq!(got[0]["id"], id.as_str());

    let out = cli.run_with_input(
        &bob,
        &["chat", &alice, "--history", "0"],
        "answered from the chat\n",
    );
    assert_eq!(out.code, 0, "chat did not fail over: {out:#?}");
    let got = cli.recv(&alice, "message", 1);
    assert_eq!(got[0]["text"], "answered from the chat");
}

#[test]
fn every_node_dead_still_fails_with_the_reason() {
    let live = TestServer::start();
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let mut cli = Cli::new(&live);
    cli.server = format!("{dead_addr},{}", live.addr);
    let alice = starting_at_first("alice", 1);
    cli.register(&alice);
    cli.register("bob");
    drop(live);

    let out = cli.run(&alice, &["send", "bob", "nobody is there"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(out.stderr.contains("not sent and not queued"), "{out:#?}");
}

#[test]
fn a_piped_chat_whose_messages_cannot_leave_exits_non_zero_and_says_so() {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::process::Stdio;

    let server = TestServer::start();
    let cli = Cli::new(&server);
    cli.register("alice");
    cli.register("bob");
    cli.run("alice", &["send", "bob", "first"]).ok();

    let mut command = cli.command("alice", &["chat", "bob", "--history", "0"]);
    command
        .env("MICROBOT_CONNECT_TIMEOUT", "3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("Chat with") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "chat ended early");
    }
    // The only node goes away while the chat is open.
    drop(server);
    writeln!(stdin, "nobody will get this").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(4), "{err}");
    assert!(
        err.contains("1 message(s) not confirmed") && err.contains("stay queued"),
        "{err}"
    );
}
