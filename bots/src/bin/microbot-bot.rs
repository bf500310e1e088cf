//! `microbot-bot`: runs a sample bot on an enrolled account's store (one
//! made by `microbot register <name>`: the store is
//! `<data dir>/profiles/<name>/store.sqlite3`; `MICROBOT_PASSPHRASE` opens
//! an encrypted one). Stops on Ctrl-C.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use microbot_client::{Account, AccountConfig, StoreConfig};

#[derive(Parser)]
#[command(name = "microbot-bot", version, about = "Runs a Microbot sample bot")]
struct Cli {
    /// The account's SDK store.
    #[arg(long)]
    store: PathBuf,
    #[command(subcommand)]
    bot: Which,
}

#[derive(Subcommand)]
enum Which {
    /// The echo bot.
    Echo,
    /// The reminder bot.
    Reminder {
        /// Where its reminders are kept.
        #[arg(long)]
        state: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut store = StoreConfig::new(&cli.store);
    if let Ok(passphrase) = std::env::var("MICROBOT_PASSPHRASE")
        && !passphrase.is_empty()
    {
        store = store.with_passphrase(passphrase);
    }
    let (account, events) = match Account::open(&store, AccountConfig::default()) {
        Ok(opened) => opened,
        Err(error) => {
            eprintln!("microbot-bot: cannot open {}: {error}", cli.store.display());
            return ExitCode::FAILURE;
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let result = match cli.bot {
        Which::Echo => {
            match microbot_bot::Bot::new(account, events, microbot_bot::samples::echo::router()) {
                Ok(bot) => {
                    bot.run(shutdown).await;
                    Ok(())
                }
                Err(error) => Err(error),
            }
        }
        Which::Reminder { state } => {
            microbot_bot::samples::reminder::run(account, events, &state, shutdown).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("microbot-bot: {error}");
            ExitCode::FAILURE
        }
    }
}
