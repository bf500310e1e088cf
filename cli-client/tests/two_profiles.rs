//! The real `microbot` binary against a real in-process server: profiles
//! registered with TOTP codes computed from the printed secret, messages
//! both ways checked through `recv --json`, safety numbers, a chat driven
//! through a pipe, and the one-line errors with their exit codes.
use crate::common;

use common::*;

#[test]
fn two_profiles_exchange_messages_verify_and_chat() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    cli.register("alice");
    cli.register("bob");

    // Alice -> Bob.
    let out = cli.run("alice", &["send", "bob", "hello bob"]).ok();
    let id = out.stdout.trim().to_owned();
    assert_eq!(id.len(), 32, "{out:#?}");
    let got = cli.recv("bob", "message", 1);
    assert_eq!(got[0]["type"], "message");
    assert_eq!(got[0]["from"], "alice");
    assert_eq!(got[0]["text"], "hello bob");
    assert_eq!(got[0]["id"], id.as_str());
    assert_eq!(got[0]["conversation"]["type"], "direct");
    assert_eq!(got[0]["conversation"]["username"], "alice");

    // Bob -> Alice.
    let reply = cli.run("bob", &["send", "alice", "hi alice"]).ok();
    let got = cli.recv("alice", "message", 1);
    assert_eq!(got[0]["from"], "bob");
    assert_eq!(got[0]["text"], "hi alice");
    assert_eq!(got[0]["id"], reply.stdout.trim());

    // Both sides list each other and compute the same safety number.
    assert_eq!(cli.run("alice", &["contacts"]).ok().stdout, "bob\n");
    let alice_number = cli.run("alice", &["verify", "bob"]).ok().stdout;
    let bob_number = cli.run("bob", &["verify", "alice", "--qr"]).ok().stdout;
    let alice_number = alice_number.lines().next().unwrap().to_owned();
    assert_eq!(bob_number.lines().next().unwrap(), alice_number);
    let groups: Vec<&str> = alice_number.split(' ').collect();
    assert_eq!(groups.len(), 12, "{alice_number}");
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
    );
    assert!(bob_number.contains("QR payload: "));
    // Nothing changed, so there is nothing to accept.
    let out = cli.run("alice", &["verify", "bob", "--accept"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("did not change"), "{out:#?}");

    // A chat driven through a pipe: a message, its edit and a reaction.
    let out = cli
        .run_with_input(
            "alice",
            &["chat", "bob", "--history", "0"],
            "through the chat\n/edit 1 through the chat, edited\n/react 1 👍\n",
        )
        .ok();
    assert!(
        out.stdout.contains("[1] alice: through the chat"),
        "{out:#?}"
    );
    assert!(
        out.stdout.contains("[1] edited: through the chat, edited"),
        "{out:#?}"
    );
    let got = cli.recv("bob", "message,edited,reaction", 3);
    assert_eq!(got[0]["type"], "message");
    assert_eq!(got[0]["text"], "through the chat");
    let chat_id = got[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(got[1]["type"], "edited");
    assert_eq!(got[1]["target"], chat_id.as_str());
    assert_eq!(got[1]["text"], "through the chat, edited");
    assert_eq!(got[2]["type"], "reaction");
    assert_eq!(got[2]["emoji"], "👍");
    assert_eq!(got[2]["target"], chat_id.as_str());

    // Bob's chat shows the converged history.
    let out = cli
        .run_with_input("bob", &["chat", "alice"], "/quit\n")
        .ok();
    assert!(out.stdout.contains("alice: hello bob"), "{out:#?}");
    assert!(
        out.stdout
            .contains("alice: through the chat, edited (edited)  [👍 alice]"),
        "{out:#?}"
    );

    // The account's devices.
    let out = cli.run("alice", &["devices"]).ok();
    assert!(out.stdout.contains("(this device)"), "{out:#?}");
}

#[test]
fn a_wrong_code_is_refused_and_the_registration_resumes() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    let (address, fingerprint) = (cli.server.clone(), cli.fingerprint.clone());
    let (out, auth) = cli.register_with("dave", "dave", &address, &fingerprint, |auth| {
        vec![auth.wrong()]
    });
    assert_eq!(out.code, 3, "{out:#?}");
    assert!(out.stderr.contains("microbot: wrong code"), "{out:#?}");
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
    // The recovery codes were shown once anyway, and how to go on.
    assert!(out.stdout.contains("Recovery codes"), "{out:#?}");
    assert!(out.stdout.contains("microbot register dave"), "{out:#?}");
    let mut auth = auth.unwrap();

    // Running it again asks for a code without registering again.
    let codes = format!("{}\n{}\n", auth.fresh(), auth.fresh());
    let out = cli
        .run_with_input(
            "dave",
            &[
                "register",
                "dave",
                "--server",
                &address,
                "--cert-sha256",
                &fingerprint,
            ],
            &codes,
        )
        .ok();
    assert!(out.stdout.contains("Account dave confirmed"), "{out:#?}");
    assert!(!out.stdout.contains("otpauth://"), "{out:#?}");
    let out = cli.run("dave", &["devices"]).ok();
    assert!(out.stdout.contains("(this device)"), "{out:#?}");

    // A second device sharing dave's identity, linked from the first one
    // (SPEC.md §12.14). A wrong code fails the enrolment; the profile can
    // be linked again with a fresh provisioning code.
    let linked = cli.link("dave", "dave2", "dave", &format!("{}\n", auth.wrong()));
    linked.sender.ok();
    assert_eq!(linked.receiver.code, 3, "{:#?}", linked.receiver);
    // Enrolment does not tell a wrong code from a wrong password (SPEC.md §13.6).
    assert_eq!(
        linked.receiver.stderr,
        "microbot: wrong username, password or code\n"
    );
    let linked = cli.link("dave", "dave2", "dave", &format!("{}\n", auth.fresh()));
    let sent = linked.sender.ok();
    assert!(sent.stdout.contains("Sent the account"), "{sent:#?}");
    let out = linked.receiver.ok();
    assert!(out.stdout.contains("Received account dave"), "{out:#?}");
    assert!(out.stdout.contains("enrolled as dave device"), "{out:#?}");
    // The code works once: the slot was read and deleted.
    let again = cli.run("dave", &["devices", "link", &linked.code]);
    assert_ne!(again.code, 0, "{again:#?}");
    assert!(
        again.stderr.contains("expired or was already used"),
        "{again:#?}"
    );
    let out = cli.run("dave2", &["devices"]).ok();
    assert_eq!(out.stdout.lines().count(), 3, "{out:#?}");
}

#[test]
fn unreachable_server_certificate_mismatch_and_unknown_names_are_one_line_errors() {
    let server = TestServer::start();
    let cli = Cli::new(&server);

    // A closed port: nothing answers.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = cli
        .command(
            "x",
            &[
                "register",
                "xavier",
                "--server",
                &closed_addr,
                "--cert-sha256",
                &cli.fingerprint,
            ],
        )
        .env("MICROBOT_CONNECT_TIMEOUT", "2")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.starts_with("microbot: server unreachable at "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // The right server with another certificate pin.
    let mut pin = cli.fingerprint.clone().into_bytes();
    pin[0] = if pin[0] == b'0' { b'1' } else { b'0' };
    let pin = String::from_utf8(pin).unwrap();
    let out = cli
        .command(
            "x",
            &[
                "register",
                "xavier",
                "--server",
                &cli.server,
                "--cert-sha256",
                &pin,
            ],
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("certificate does not match"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // A profile without an account.
    let out = cli.run("nobody", &["send", "bob", "hi"]);
    assert_eq!(out.code, 6, "{out:#?}");
    assert!(out.stderr.contains("has no account yet"), "{out:#?}");

    // Unknown contacts.
    cli.register("erin");
    let out = cli.run("erin", &["verify", "frank"]);
    assert_eq!(out.code, 6, "{out:#?}");
    assert!(
        out.stderr.starts_with("microbot: unknown contact: frank"),
        "{out:#?}"
    );
    let out = cli.run("erin", &["send", "frank", "hello?"]);
    assert_eq!(out.code, 6, "{out:#?}");
    assert!(
        out.stderr.starts_with("microbot: unknown contact: frank"),
        "{out:#?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");

    // A usage error is clap's (exit 2).
    let out = cli.run("erin", &["send"]);
    assert_eq!(out.code, 2, "{out:#?}");
}

#[test]
fn a_group_of_three_and_a_file_round_trip() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    for name in ["alice", "bob", "carol"] {
        cli.register(name);
    }

    // A group of three.
    let out = cli
        .run("alice", &["group", "create", "team", "bob", "carol"])
        .ok();
    let group_id = out.stdout.trim().to_owned();
    assert_eq!(group_id.len(), 32, "{out:#?}");
    let sent = cli.run("alice", &["send", "team", "hello team"]).ok();
    for member in ["bob", "carol"] {
        let got = cli.recv(member, "message", 1);
        assert_eq!(got[0]["from"], "alice", "{got:?}");
        assert_eq!(got[0]["text"], "hello team");
        assert_eq!(got[0]["id"], sent.stdout.trim());
        assert_eq!(got[0]["conversation"]["type"], "group");
        assert_eq!(got[0]["conversation"]["id"], group_id.as_str());
        assert_eq!(got[0]["conversation"]["name"], "team");
    }
    let out = cli.run("carol", &["group", "list"]).ok();
    assert!(out.stdout.starts_with(&group_id), "{out:#?}");
    assert!(out.stdout.contains("#team\talice*, bob, carol"), "{out:#?}");
    // A member answers the group, by its #name.
    cli.run("carol", &["send", "#team", "hi from carol"]).ok();
    for member in ["alice", "bob"] {
        let got = cli.recv(member, "message", 1);
        assert_eq!(got[0]["from"], "carol");
        assert_eq!(got[0]["text"], "hi from carol");
        assert_eq!(got[0]["conversation"]["name"], "team");
    }

    // The group's chat shows both messages under the group's name.
    let out = cli.run_with_input("bob", &["chat", "team"], "/quit\n").ok();
    assert!(
        out.stdout.starts_with("Chat with #team as bob."),
        "{out:#?}"
    );
    assert!(out.stdout.contains("[1] alice: hello team\n"), "{out:#?}");
    assert!(
        out.stdout.contains("[2] carol: hi from carol\n"),
        "{out:#?}"
    );

    // A file to Bob, fetched back byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let original: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let path = dir.path().join("notes.bin");
    std::fs::write(&path, &original).unwrap();
    let out = cli
        .run("alice", &["file", "send", "bob", path.to_str().unwrap()])
        .ok();
    let file_id = out.stdout.trim().to_owned();
    assert_eq!(file_id.len(), 32, "{out:#?}");
    // Not a terminal: no progress bar.
    assert!(!out.stderr.contains('['), "{out:#?}");
    let got = cli.recv("bob", "message", 1);
    assert_eq!(got[0]["id"], file_id.as_str());
    assert_eq!(got[0]["file"]["name"], "notes.bin");
    assert_eq!(got[0]["file"]["size"], original.len());
    let dest = dir.path().join("fetched");
    std::fs::create_dir(&dest).unwrap();
    let out = cli
        .run("bob", &["file", "get", &file_id, dest.to_str().unwrap()])
        .ok();
    assert_eq!(out.stdout.trim(), dest.join("notes.bin").to_str().unwrap());
    assert!(std::fs::read(dest.join("notes.bin")).unwrap() == original);
    // An id that names no file message.
    let out = cli.run(
        "bob",
        &["file", "get", &"00".repeat(16), dest.to_str().unwrap()],
    );
    assert_eq!(out.code, 6, "{out:#?}");
    assert!(
        out.stderr.starts_with("microbot: unknown message"),
        "{out:#?}"
    );

    // Membership changes: Alice removes Carol, Bob leaves.
    cli.run("alice", &["group", "remove", "team", "carol"]).ok();
    cli.run("bob", &["group", "leave", "team"]).ok();
    let out = cli.run("alice", &["group", "list"]).ok();
    assert!(out.stdout.contains("#team\talice*\n"), "{out:#?}");
    let out = cli.run("carol", &["send", "#team", "still here?"]);
    assert_eq!(out.code, 6, "{out:#?}");
    assert_eq!(
        out.stderr,
        "microbot: unknown group: team (you left it or were removed)\n"
    );
}

#[test]
fn a_changed_identity_blocks_sending_until_it_is_accepted() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    cli.register("alice");
    let mut bob_auth = cli.register("bob");
    cli.run("alice", &["send", "bob", "one"]).ok();
    cli.recv("bob", "message", 1);
    let old_number = cli.run("alice", &["verify", "bob"]).ok().stdout;

    // Bob reinstalls: a new device with a new identity, the old one removed.
    let bob1 = cli.run("bob", &["devices"]).ok().stdout;
    let bob1_id = bob1
        .lines()
        .find(|l| l.ends_with("(this device)"))
        .and_then(|l| l.split('\t').next())
        .unwrap()
        .to_owned();
    let mut login = cli.command(
        "bob-new",
        &[
            "login",
            "bob",
            "--server",
            &cli.server,
            "--cert-sha256",
            &cli.fingerprint,
        ],
    );
    login.env("MICROBOT_PASSWORD", password("bob"));
    let out = run_command(login, &format!("{}\n", bob_auth.fresh())).ok();
    assert!(out.stderr.contains("new identity key"), "{out:#?}");
    let mut remove = cli.command("bob-new", &["devices", "remove", &bob1_id]);
    remove.env("MICROBOT_PASSWORD", password("bob"));
    let out = run_command(remove, &format!("{}\n", bob_auth.fresh())).ok();
    assert!(
        out.stdout.contains(&format!("Removed device {bob1_id}")),
        "{out:#?}"
    );
    let out = cli.run("bob", &["send", "alice", "from the old device"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .starts_with("microbot: the server refused this device"),
        "{out:#?}"
    );

    // Alice hears from the new identity and is told.
    let mut command = cli.command("bob-new", &["send", "alice", "new phone"]);
    command.env("MICROBOT_PASSWORD", password("bob"));
    run_command(command, "").ok();
    let got = cli.recv("alice", "message,safety_number_changed", 2);
    let kinds: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"safety_number_changed"), "{got:?}");
    assert_eq!(
        cli.run("alice", &["contacts"])
            .ok()
            .stdout
            .lines()
            .next()
            .unwrap(),
        "bob\tsafety number changed: `microbot verify bob`"
    );

    // Sending is held until Alice compares and accepts the new number.
    let out = cli.run("alice", &["send", "bob", "is that you?"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("verify bob --accept"), "{out:#?}");
    let out = cli.run("alice", &["verify", "bob"]).ok();
    assert_ne!(out.stdout, old_number);
    assert!(out.stderr.contains("changed"), "{out:#?}");
    let mut theirs = cli.command("bob-new", &["verify", "alice"]);
    theirs.env("MICROBOT_PASSWORD", password("bob"));
    assert_eq!(run_command(theirs, "").ok().stdout, out.stdout);
    cli.run("alice", &["verify", "bob", "--accept"]).ok();
    cli.run("alice", &["send", "bob", "welcome back"]).ok();
    let mut command = cli.command(
        "bob-new",
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
    command.env("MICROBOT_PASSWORD", password("bob"));
    let got = run_command(command, "").ok().json_lines();
    assert_eq!(got[0]["text"], "welcome back");
}

#[test]
fn an_enrolled_profile_reports_a_stopped_server_and_a_changed_certificate() {
    let server = TestServer::start();
    let addr = server.addr;
    let cli = Cli::new(&server);
    cli.register("alice");
    drop(server);

    // Nothing listens any more.
    let mut command = cli.command("alice", &["send", "bob", "anyone?"]);
    command.env("MICROBOT_CONNECT_TIMEOUT", "2");
    let out = run_command(command, "");
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stderr
            .starts_with(&format!("microbot: server unreachable at {addr}")),
        "{out:#?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");

    // Another server (another certificate) on the same address.
    let impostor = TestServer::start_on(addr);
    assert_ne!(impostor.fingerprint, cli.fingerprint);
    let out = cli.run("alice", &["recv", "--timeout", "1"]);
    assert_eq!(out.code, 5, "{out:#?}");
    assert!(
        out.stderr
            .starts_with("microbot: the server's certificate does not match"),
        "{out:#?}"
    );

    // An encrypted profile needs its passphrase.
    let mut register = cli.command(
        "sealed",
        &[
            "register",
            "sealed",
            "--server",
            &impostor.addr.to_string(),
            "--cert-sha256",
            &impostor.fingerprint,
        ],
    );
    register.env("MICROBOT_PASSPHRASE", "open sesame");
    let (out, _) = register_command(register, |auth| vec![auth.fresh(), auth.fresh()]);
    out.ok();
    let out = cli.run("sealed", &["contacts"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        "microbot: the store is encrypted: a passphrase is required (set MICROBOT_PASSPHRASE)\n"
    );
    let mut wrong = cli.command("sealed", &["contacts"]);
    wrong.env("MICROBOT_PASSPHRASE", "open barley");
    let out = run_command(wrong, "");
    assert_eq!(
        out.stderr,
        "microbot: wrong passphrase (set MICROBOT_PASSPHRASE)\n"
    );
    let mut right = cli.command("sealed", &["devices"]);
    right.env("MICROBOT_PASSPHRASE", "open sesame");
    assert!(run_command(right, "").ok().stdout.contains("(this device)"));
}

#[test]
fn a_bot_account_is_marked_as_a_bot_to_those_it_writes_to() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    cli.register("alice");
    let (server_addr, fingerprint) = (cli.server.clone(), cli.fingerprint.clone());
    let command = cli.command(
        "helper",
        &[
            "register",
            "helper",
            "--bot",
            "--server",
            &server_addr,
            "--cert-sha256",
            &fingerprint,
        ],
    );
    let (out, _) = register_command(command, |auth| vec![auth.fresh(), auth.fresh()]);
    assert!(out.ok().stdout.contains("enrolled"));

    // Alice writes first: fetching the bot's keys tells her client it is one.
    cli.run("alice", &["send", "helper", "hello"]).ok();
    assert_eq!(cli.recv("helper", "message", 1)[0]["bot"], false);
    cli.run("helper", &["send", "alice", "beep"]).ok();
    let got = cli.recv("alice", "message", 1);
    assert_eq!(got[0]["from"], "helper");
    assert_eq!(got[0]["bot"], true, "{got:?}");
}
