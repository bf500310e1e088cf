//! Issue 14, the CLI tried as a new user would (the real binary against a
//! real in-process server): `recv` shows every message not shown yet,
//! whoever fetched it; long text from standard input or a file; the
//! smaller rough edges (file overwrite, reply context, blank text, exit
//! codes, a stopped server).
use crate::common;

use common::*;

fn recv_json(cli: &Cli, profile: &str, args: &[&str]) -> Output {
    let mut all = vec!["recv", "--json", "--only", "message"];
    all.extend_from_slice(args);
    cli.run(profile, &all)
}

fn texts(out: &Output) -> Vec<String> {
    out.json_lines()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn recv_shows_every_message_not_shown_yet_whoever_fetched_it() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    cli.register("alice");
    cli.register("bob");
    for text in ["one", "two", "three"] {
        cli.run("alice", &["send", "bob", text]).ok();
    }
    // Bob's `send` connects and fetches the three into local history first.
    cli.run("bob", &["send", "alice", "hi"]).ok();
    // `recv --count 1` shows the first; the rest of the batch is not lost.
    let out = recv_json(&cli, "bob", &["--count", "1", "--timeout", "20"]).ok();
    assert_eq!(texts(&out), ["one"], "{out:#?}");
    let out = recv_json(&cli, "bob", &["--count", "2", "--timeout", "20"]).ok();
    assert_eq!(texts(&out), ["two", "three"], "{out:#?}");
    // Shown once: nothing is shown again.
    let out = recv_json(&cli, "bob", &["--timeout", "2"]).ok();
    assert_eq!(texts(&out), Vec::<String>::new(), "{out:#?}");

    // A filter leaves what it does not show for a later `recv`.
    let sent = cli.run("alice", &["send", "bob", "four"]).ok();
    let id = sent.stdout.trim().to_owned();
    let out = cli
        .run_with_input("alice", &["chat", "bob", "--history", "1"], "/react 1 👍\n")
        .ok();
    assert!(out.stdout.contains("[1] alice: four"), "{out:#?}");
    let out = cli
        .run(
            "bob",
            &[
                "recv",
                "--json",
                "--only",
                "reaction",
                "--count",
                "1",
                "--timeout",
                "20",
            ],
        )
        .ok();
    let got = out.json_lines();
    assert_eq!(got[0]["type"], "reaction", "{out:#?}");
    assert_eq!(got[0]["target"], id.as_str(), "{out:#?}");
    let out = recv_json(&cli, "bob", &["--count", "1", "--timeout", "20"]).ok();
    assert_eq!(texts(&out), ["four"], "{out:#?}");
}

#[test]
fn long_text_comes_from_standard_input_or_a_file_with_one_limit() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    cli.register("alice");
    cli.register("bob");
    let dir = tempfile::tempdir().unwrap();

    // From standard input; the final line break is dropped.
    cli.run_with_input("alice", &["send", "bob", "-"], "line one\nline two\n")
        .ok();
    // From a file: exactly the limit (65536 bytes) fits.
    let fits = dir.path().join("fits.txt");
    std::fs::write(&fits, format!("{}\n", "a".repeat(65536))).unwrap();
    cli.run(
        "alice",
        &["send", "bob", "--text-file", fits.to_str().unwrap()],
    )
    .ok();
    let out = recv_json(&cli, "bob", &["--count", "2", "--timeout", "20"]).ok();
    let got = texts(&out);
    assert_eq!(got[0], "line one\nline two");
    assert_eq!(got[1].len(), 65536);

    // One byte more, by any route, is refused with the same limit and a
    // pointer to `file send`; nothing is sent.
    let over = dir.path().join("over.txt");
    std::fs::write(&over, "b".repeat(65537)).unwrap();
    let by_file = cli.run(
        "alice",
        &["send", "bob", "--text-file", over.to_str().unwrap()],
    );
    let by_stdin = cli.run_with_input("alice", &["send", "bob", "-"], &"c".repeat(300_000));
    let by_argument = cli.run("alice", &["send", "bob", &"d".repeat(100_000)]);
    for out in [&by_file, &by_stdin, &by_argument] {
        assert_eq!(out.code, 1, "{out:#?}");
        assert!(
            out.stderr.contains("a message holds at most 65536 bytes"),
            "{out:#?}"
        );
        assert!(
            out.stderr.contains("`microbot file send bob PATH`"),
            "{out:#?}"
        );
        assert!(!out.stderr.contains("262144"), "{out:#?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    }
    assert!(by_argument.stderr.contains("the text is 100000 bytes"));
    assert!(by_stdin.stderr.contains("more than 65536 bytes"));

    // `chat` refuses the long line, sends the others, and exits non-zero.
    let input = format!("short one\n{}\nshort two\n", "e".repeat(70_000));
    let out = cli.run_with_input("alice", &["chat", "bob", "--history", "0"], &input);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("microbot file send bob PATH"),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("1 input line(s) were refused"),
        "{out:#?}"
    );
    let out = recv_json(&cli, "bob", &["--timeout", "3"]).ok();
    assert_eq!(texts(&out), ["short one", "short two"], "{out:#?}");
}

#[test]
fn blank_text_files_replies_and_unreachable_servers_as_a_new_user_meets_them() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    cli.register("alice");
    cli.register("bob");

    // Empty and white-space-only texts: the same plain refusal.
    for blank in ["", "   ", " \t \n"] {
        let out = cli.run("alice", &["send", "bob", blank]);
        assert_eq!(out.code, 1, "{blank:?}: {out:#?}");
        assert_eq!(
            out.stderr, "microbot: the message is empty; nothing was sent\n",
            "{blank:?}"
        );
    }

    // A reply shows its context to the recipient too.
    cli.run("alice", &["send", "bob", "lunch?"]).ok();
    cli.run_with_input("bob", &["chat", "alice"], "/reply 1 yes, at noon\n")
        .ok();
    let out = cli
        .run(
            "alice",
            &[
                "recv",
                "--only",
                "message",
                "--count",
                "1",
                "--timeout",
                "20",
            ],
        )
        .ok();
    assert!(out.stdout.contains("bob (reply to "), "{out:#?}");
    let out = cli
        .run_with_input("alice", &["chat", "bob"], "/quit\n")
        .ok();
    assert!(
        out.stdout.contains("[2] bob (reply to [1]): yes, at noon"),
        "{out:#?}"
    );

    // `file get`: the hint names DEST; an existing file is kept unless --force.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"the notes").unwrap();
    let sent = cli
        .run("alice", &["file", "send", "bob", path.to_str().unwrap()])
        .ok();
    let id = sent.stdout.trim().to_owned();
    let out = cli
        .run(
            "bob",
            &[
                "recv",
                "--only",
                "message",
                "--count",
                "1",
                "--timeout",
                "20",
            ],
        )
        .ok();
    assert!(
        out.stdout
            .contains(&format!("`microbot file get {id} DEST`")),
        "{out:#?}"
    );
    let dest = dir.path().join("mine.txt");
    std::fs::write(&dest, b"do not lose me").unwrap();
    let out = cli.run("bob", &["file", "get", &id, dest.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("exists"), "{out:#?}");
    assert!(out.stderr.contains("--force"), "{out:#?}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"do not lose me");
    cli.run(
        "bob",
        &["file", "get", &id, dest.to_str().unwrap(), "--force"],
    )
    .ok();
    assert_eq!(std::fs::read(&dest).unwrap(), b"the notes");

    // A host name that does not resolve is "unreachable" (exit 4).
    let out = cli.run(
        "x",
        &[
            "register",
            "xavier",
            "--server",
            "no-such-host.invalid:7447",
            "--cert-sha256",
            &cli.fingerprint,
        ],
    );
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stderr
            .starts_with("microbot: server unreachable at no-such-host.invalid:7447"),
        "{out:#?}"
    );

    // A stopped server: `send` says the message was neither sent nor
    // queued; `file send` queued the file (like the SDK) and says so, and
    // the history shows it queued.
    drop(server);
    let mut command = cli.command("alice", &["send", "bob", "anyone?"]);
    command.env("MICROBOT_CONNECT_TIMEOUT", "2");
    let out = run_command(command, "");
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stderr
            .trim_end()
            .ends_with("the message was not sent and not queued"),
        "{out:#?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    let offline = dir.path().join("offline.txt");
    std::fs::write(&offline, b"written on a plane").unwrap();
    let mut command = cli.command("alice", &["file", "send", "bob", offline.to_str().unwrap()]);
    command.env("MICROBOT_CONNECT_TIMEOUT", "2");
    let out = run_command(command, "");
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stderr
            .trim_end()
            .ends_with("the message is queued and leaves with the next command that connects"),
        "{out:#?}"
    );
    assert!(out.stdout.is_empty(), "{out:#?}");
    let out = cli.run("alice", &["history", "bob", "--json"]).ok();
    assert!(
        out.stdout.contains("offline.txt") && out.stdout.contains("\"state\":\"queued\""),
        "{out:#?}"
    );
}

#[test]
fn a_newly_linked_profile_gets_the_very_next_message() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    cli.register("alice");
    let mut bob_auth = cli.register("bob");
    cli.run("alice", &["send", "bob", "one"]).ok();
    let out = recv_json(&cli, "bob", &["--count", "1", "--timeout", "20"]).ok();
    assert_eq!(texts(&out), ["one"]);

    // Bob links a second profile (same identity); Alice's next message
    // reaches it, though her device list of Bob is fresh.
    // Bob agrees to give it his history: the message he already has.
    let linked = cli.link_with(
        "bob",
        "bob2",
        "bob",
        &format!("{}\n", bob_auth.fresh()),
        &["--history", "5"],
    );
    linked.sender.ok();
    let received = linked.receiver.ok();
    assert!(
        received.stdout.contains("(1 contacts, 1 history messages)"),
        "{received:#?}"
    );
    cli.run("alice", &["send", "bob", "two"]).ok();
    let mut recv2 = cli.command(
        "bob2",
        &[
            "recv",
            "--json",
            "--only",
            "message",
            "--count",
            "1",
            "--timeout",
            "20",
        ],
    );
    recv2.env("MICROBOT_PASSWORD", password("bob"));
    let out = run_command(recv2, "").ok();
    assert_eq!(texts(&out), ["two"], "{out:#?}");
    let out = recv_json(&cli, "bob", &["--count", "1", "--timeout", "20"]).ok();
    assert_eq!(texts(&out), ["two"], "{out:#?}");
}
