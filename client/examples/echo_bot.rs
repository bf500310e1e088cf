//! A bot that answers every message it receives with the same text, in 1:1
//! conversations and groups alike, and saves the files it is sent — the
//! whole bot API in one screen.
//!
//! ```text
//! # first run: enrol this bot's device on an existing, confirmed account
//! cargo run -p microbot-client --example echo_bot -- enrol bot.sqlite3 \
//!     127.0.0.1:7447 <server-fingerprint-hex> <username> <password> <totp-code>
//! # later runs: reopen the profile
//! cargo run -p microbot-client --example echo_bot -- run bot.sqlite3
//! ```
//! Set `MICROBOT_PASSPHRASE` to keep the profile encrypted at rest.

use microbot_client::{
    Account, AccountConfig, ConnectionState, Enrolment, Event, IdentitySource, SecondFactor,
    ServerConfig, StoreConfig,
};

fn usage() -> ! {
    eprintln!(
        "usage: echo_bot run STORE\n       echo_bot enrol STORE ADDR FINGERPRINT USERNAME PASSWORD TOTP"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, path) = match (args.first(), args.get(1)) {
        (Some(command), Some(path)) => (command.as_str(), path.as_str()),
        _ => usage(),
    };
    let mut store = StoreConfig::new(path);
    if let Ok(passphrase) = std::env::var("MICROBOT_PASSPHRASE") {
        store = store.with_passphrase(passphrase);
    }
    let mut config = AccountConfig::default();
    config.device_name = "echo bot".into();
    let (account, mut events) = match (command, &args[2..]) {
        ("run", []) => Account::open(&store, config)?,
        ("enrol", [addr, fingerprint, username, password, totp]) => {
            let server = ServerConfig::new(addr.parse()?, fingerprint)?;
            let enrolment = Enrolment {
                username: username.clone(),
                password: password.clone().into(),
                second_factor: SecondFactor::Totp(totp.clone()),
                identity: IdentitySource::New,
            };
            Account::enrol(&store, server, enrolment, config).await?
        }
        _ => usage(),
    };
    account.connect();
    println!(
        "{} (device {}) is running",
        account.username(),
        account.device_id()
    );
    while let Some(event) = events.next().await {
        match event {
            Event::Message(message) if message.author != account.username() => {
                println!("{} says {:?}", message.author, message.text);
                if let Some(file) = &message.attachment {
                    // Never trust a sender's file name as a path.
                    let name: String = file
                        .file_name
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                        .collect();
                    let dest = std::path::PathBuf::from(format!("received-{name}"));
                    match account
                        .download_attachment(&message.message_id, &dest, |_| {})
                        .await
                    {
                        Ok(size) => account.send_text(
                            &message.conversation,
                            &format!("got your file ({size} bytes)"),
                        )?,
                        Err(error) => account.send_text(
                            &message.conversation,
                            &format!("could not fetch your file: {error}"),
                        )?,
                    };
                } else {
                    account.send_text(&message.conversation, &message.text)?;
                }
                account.mark_read(&message.conversation, &[message.message_id])?;
            }
            Event::GroupChanged {
                group_id, update, ..
            } => println!("group {group_id}: {update:?}"),
            Event::SafetyNumberChanged {
                username,
                safety_number,
            } => {
                // A bot has nobody to compare with; it accepts and logs the new number.
                println!("safety number of {username} changed: {safety_number}");
                account.acknowledge_identity_change(&username)?;
            }
            Event::Connection(ConnectionState::Refused { reason }) => {
                return Err(format!("the server refused this device: {reason}").into());
            }
            Event::Connection(state) => println!("connection: {state:?}"),
            _ => {}
        }
    }
    Ok(())
}
