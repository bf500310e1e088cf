//! Bot-input target (docs/BOTS.md): `bot_command` feeds arbitrary text to
//! the command parser, the reminder delay parser and the reminder file
//! decoder of `microbot-bot`, which all read what strangers send (or what
//! is on disk).
//!
//! Invariants: a parsed command has a valid lowercase name and at most
//! `MAX_ARGS` arguments, and its arguments, quoted again, parse back to
//! the same arguments; a parsed delay is within 1 s ..= `MAX_DELAY`.

use microbot_bot::command::{self, Invocation, MAX_ARGS};
use microbot_bot::samples::reminder::{book, delay};

/// The target.
pub fn bot_command(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(invocation) = command::parse(&text, "fuzzbot") {
        check_invocation(&invocation);
    }
    if let Ok(parsed) = delay::parse_delay(&text) {
        assert!(parsed >= std::time::Duration::from_secs(1) && parsed <= delay::MAX_DELAY);
    }
    let _ = book::decode(data);
}

fn check_invocation(invocation: &Invocation) {
    assert!(command::is_valid_name(&invocation.name));
    assert_eq!(invocation.name, invocation.name.to_ascii_lowercase());
    assert!(invocation.args.len() <= MAX_ARGS);
    let quoted: Vec<String> = invocation
        .args
        .iter()
        .map(|arg| format!("\"{}\"", arg.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    let again = command::parse(
        &format!("/{} {}", invocation.name, quoted.join(" ")),
        "fuzzbot",
    )
    .unwrap_or_else(|e| panic!("re-quoted arguments do not parse: {e}"));
    assert_eq!(again.args, invocation.args);
}
