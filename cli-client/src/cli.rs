//! The command line (clap derive): global options and one subcommand per
//! task. Not owned here: what the commands do (commands/).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Targets: NAME is a username; a group is named by its name or id, or forced
with a leading '#' (#team). A leading '@' forces a username.

Environment: MICROBOT_PASSWORD (account password, else asked for),
MICROBOT_PASSPHRASE (encrypts a new profile's store at rest, and opens it),
MICROBOT_HOME (same as --data-dir), MICROBOT_PROFILE (same as --profile).

Exit codes: 0 ok, 1 failure, 2 usage, 3 wrong password/code or username taken,
4 server unreachable, 5 server certificate does not match the pin,
6 unknown contact/group/message/profile, 7 recv --count timed out.";

/// `microbot`: end-to-end encrypted messaging from the terminal.
#[derive(Debug, Parser)]
#[command(name = "microbot", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Profile to use (one account device per profile).
    #[arg(
        long,
        global = true,
        env = "MICROBOT_PROFILE",
        default_value = "default"
    )]
    pub profile: String,
    /// Directory holding `profiles/` (default: the user's data directory + /microbot).
    #[arg(long, global = true, env = "MICROBOT_HOME", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seconds to wait for the server before giving up.
    #[arg(
        long,
        global = true,
        env = "MICROBOT_CONNECT_TIMEOUT",
        default_value_t = 15,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=600)
    )]
    pub connect_timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account (TOTP enrolment with a QR code) and enrol this device.
    Register(Register),
    /// Enrol this device on an existing account with a new identity
    /// (password + TOTP code; contacts see a new safety number).
    Login(Login),
    /// Link this device to an account: shows a code (and QR code) for
    /// `microbot devices link CODE` on an existing device, which sends the
    /// account's identity and contacts end-to-end encrypted; then enrols
    /// with password + TOTP code.
    Link(Link),
    /// List contacts and whether a safety-number change awaits acceptance.
    Contacts,
    /// Show the safety number with a contact, or accept a changed one.
    Verify(Verify),
    /// Send one text message.
    Send(Send),
    /// Open an interactive chat (works with piped standard input too).
    Chat(Chat),
    /// Print incoming events (as JSON lines with --json).
    Recv(Recv),
    /// Show a conversation's stored messages, newest page first (works
    /// offline); pass the printed cursor as --before for the older page.
    History(History),
    /// Groups: create, add, remove, leave, rename, list.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Files: send one, or fetch a received one.
    #[command(subcommand)]
    File(FileCommand),
    /// List this account's devices, or remove one.
    Devices(Devices),
}

/// Where the server is.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server's QUIC address, host:port; a cluster's nodes as
    /// host:port,host:port,… (devices spread over them and fail over).
    #[arg(long, value_name = "ADDR")]
    pub server: String,
    /// SHA-256 of the server's certificate, as the server prints it at start.
    #[arg(long, value_name = "HEX")]
    pub cert_sha256: String,
}

/// `register`.
#[derive(Debug, Args)]
pub struct Register {
    /// The username (3 to 32 of a-z 0-9 _ . -).
    pub username: String,
    /// Where the server is.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Name of this device in the account's device list.
    #[arg(long, default_value = "microbot CLI")]
    pub device_name: String,
    /// Register a bot account: everyone who writes to it is told it is a
    /// program (SPEC.md §12.3). Fixed for the account's lifetime.
    #[arg(long)]
    pub bot: bool,
}

/// `login`.
#[derive(Debug, Args)]
pub struct Login {
    /// The username.
    pub username: String,
    /// Where the server is.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Use a recovery code instead of a TOTP code (it is used up).
    #[arg(long)]
    pub recovery_code: bool,
    /// Name of this device in the account's device list.
    #[arg(long, default_value = "microbot CLI")]
    pub device_name: String,
}

/// `link`: this new device receives the account from an existing device.
#[derive(Debug, Args)]
pub struct Link {
    /// Where the server is.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Use a recovery code instead of a TOTP code (it is used up).
    #[arg(long)]
    pub recovery_code: bool,
    /// Name of this device in the account's device list.
    #[arg(long, default_value = "microbot CLI")]
    pub device_name: String,
    /// Seconds to wait for the existing device (at most the code's life, 600).
    #[arg(long, default_value_t = 600, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub wait: u64,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct Verify {
    /// The contact.
    pub name: String,
    /// Also show the safety number as a QR code (and its payload in hex).
    #[arg(long)]
    pub qr: bool,
    /// Accept the contact's changed identity (after comparing the number).
    #[arg(long)]
    pub accept: bool,
}

/// `send`.
#[derive(Debug, Args)]
#[command(after_help = SEND_HELP)]
pub struct Send {
    /// A username or a group.
    pub target: String,
    /// The text; `-` reads it from standard input.
    #[arg(required_unless_present = "text_file", conflicts_with = "text_file")]
    pub text: Option<String>,
    /// Read the text from this file (UTF-8).
    #[arg(long, value_name = "PATH")]
    pub text_file: Option<PathBuf>,
}

const SEND_HELP: &str = "\
A message holds at most 65536 bytes of text (trailing line breaks of standard
input or a file are dropped); send anything longer as a file:
`microbot file send TARGET PATH`.";

/// `chat`.
#[derive(Debug, Args)]
pub struct Chat {
    /// A username or a group.
    pub target: String,
    /// How many earlier messages to show.
    #[arg(long, default_value_t = 20)]
    pub history: u32,
}

const RECV_HELP: &str = "\
JSON lines: every object has \"type\"; ids are 32 hex digits; \"conversation\" is
{\"type\":\"direct\",\"username\":…} or {\"type\":\"group\",\"id\":…,\"name\":…}. A message:
{\"type\":\"message\",\"conversation\":…,\"from\":…,\"device\":…,\"id\":…,\"sent_at_ms\":…,
 \"text\":…,\"reply_to\":…|null,\"file\":{\"name\",\"size\",\"content_type\"}|null}.
A failed send: {\"type\":\"send_failed\",\"id\":…,\"reason\":…,\"reason_kind\":…}, \"reason\"
for people, \"reason_kind\" a stable name (unknown_account, not_group_member, server_refused, …).
Without --only, \"sent\" and \"prekeys_refilled\" are left out.";

/// `recv`.
#[derive(Debug, Args)]
#[command(after_help = RECV_HELP)]
pub struct Recv {
    /// One JSON object per line and event.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many seconds (exit 0 unless --count was not reached).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Stop after this many (shown) events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Show only these event types (comma-separated: message, edited, deleted,
    /// reaction, receipt, typing, group_changed, safety_number_changed,
    /// decryption_failed, connection, sent, send_failed, not_delivered, prekeys_refilled, device_added).
    #[arg(long, value_delimiter = ',', value_name = "TYPES")]
    pub only: Vec<String>,
}

const HISTORY_HELP: &str = "\
Our own messages show how far they got: queued (not sent yet), sent, delivered
(to whom), read (by whom) or failed (why; it was not sent). When older messages
exist, the last line is the command for the next older page; its cursor stays
valid while new messages arrive. JSON: {\"type\":\"history\",\"conversation\":C,
\"messages\":[{\"id\",\"from\",\"sent_at_ms\",\"text\"|null,\"deleted\",\"edited\",
\"reply_to\",\"file\",\"delivery\":{\"state\",\"delivered_to\",\"read_by\",
\"server_timestamp_ms\",\"failure\":{\"kind\",\"reason\"}|null}|null}],
\"older\":CURSOR|null}, oldest message first.";

/// `history`.
#[derive(Debug, Args)]
#[command(after_help = HISTORY_HELP)]
pub struct History {
    /// A username or a group.
    pub target: String,
    /// How many messages to show.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: u32,
    /// Show the messages older than this cursor (as the previous page printed it).
    #[arg(long, value_name = "CURSOR")]
    pub before: Option<microbot_client::HistoryCursor>,
    /// One JSON object for the page.
    #[arg(long)]
    pub json: bool,
}

/// `group ...`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group with these members (you are its admin).
    Create {
        /// The group's name.
        name: String,
        /// Usernames to add.
        members: Vec<String>,
    },
    /// Add members.
    Add {
        /// The group.
        group: String,
        /// Usernames to add.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members.
    Remove {
        /// The group.
        group: String,
        /// Usernames to remove.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Leave a group.
    Leave {
        /// The group.
        group: String,
    },
    /// Rename a group.
    Rename {
        /// The group.
        group: String,
        /// The new name.
        name: String,
    },
    /// List your groups.
    List,
}

/// `file ...`.
#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Encrypt, upload and send a file. The file is queued first: when the
    /// server cannot be reached (exit 4), it leaves with the next command
    /// that connects.
    Send {
        /// A username or a group.
        target: String,
        /// The file.
        path: PathBuf,
        /// A caption.
        #[arg(long, default_value = "")]
        caption: String,
    },
    /// Download and decrypt a received file.
    Get {
        /// The message id (hex, as `recv` prints it).
        message_id: String,
        /// Where to write it (a directory keeps the sender's file name).
        dest: PathBuf,
        /// Replace the file at DEST if there is one.
        #[arg(long)]
        force: bool,
    },
}

/// `devices`.
#[derive(Debug, Args)]
pub struct Devices {
    /// `list` (the default) or `remove ID`.
    #[command(subcommand)]
    pub action: Option<DevicesCommand>,
}

/// `devices ...`.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List the account's devices.
    List,
    /// Remove a device (needs password + a TOTP code).
    Remove {
        /// The device id (as `devices list` shows it).
        id: u64,
    },
    /// Give this account to a new device showing CODE (from `microbot link`).
    Link {
        /// The code the new device shows (dashes and case do not matter).
        code: String,
        /// Also send the newest N messages of every conversation (with your
        /// agreement only: the new device then holds them; capped at 1000
        /// messages and 64 KiB).
        #[arg(long, value_name = "N")]
        history: Option<u32>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_quoted_text_limit_is_the_sdks() {
        let quoted = microbot_client::MAX_TEXT_LEN.to_string();
        assert!(SEND_HELP.contains(&format!("at most {quoted} bytes")));
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = Cli::try_parse_from([
            "microbot",
            "send",
            "bob",
            "hi",
            "--profile",
            "alice",
            "--data-dir",
            "/tmp/m",
        ])
        .unwrap();
        assert_eq!(cli.profile, "alice");
        assert!(matches!(cli.command, Command::Send(Send { ref target, .. }) if target == "bob"));
        let cli = Cli::try_parse_from(["microbot", "recv", "--json", "--only", "message,edited"])
            .unwrap();
        let Command::Recv(recv) = cli.command else {
            panic!("not recv")
        };
        assert_eq!(recv.only, ["message", "edited"]);
    }
}
