//! `microbot`: the command-line client of Microbot, a thin face on the
//! `microbot-client` SDK (no protocol or cryptography here).
//!
//! ```text
//! microbot register alice --server 203.0.113.5:7447 --cert-sha256 <hex>
//! microbot send bob "hello"            microbot recv --json --timeout 10
//! microbot chat bob                    microbot verify bob
//! microbot history bob --limit 50      microbot history bob --before <cursor>
//! microbot group create team bob carol microbot file send team ./report.pdf
//! ```
//!
//! Modules, one concept each:
//! - [`cli`]: the command line (clap).
//! - [`profile`]: profile directories and what the CLI remembers in them.
//! - [`session`]: opening a profile's account and bringing it online.
//! - [`target`]: naming a conversation (user or group) on the command line.
//! - [`render`]: events as JSON lines or text.
//! - [`prompt`], [`qr`], [`progress`]: terminal input, QR codes, progress bars.
//! - [`screen`]: the chat's input (a line editor on a terminal) and output.
//! - [`error`]: one-line errors and exit codes.
//! - `commands/`: one module per group of subcommands.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cli;
mod commands;
mod error;
mod profile;
mod progress;
mod prompt;
mod qr;
mod render;
mod screen;
mod session;
mod target;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::profile::Profile;
use crate::session::Ctx;

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_owned());
        eprintln!("microbot: internal error: {what}");
    }));
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("microbot: cannot start the async runtime: {e}");
            return ExitCode::from(error::exit::FAILURE);
        }
    };
    let result = runtime.block_on(run(cli));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("microbot: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Ctx {
        profile: Profile::locate(cli.data_dir.as_deref(), &cli.profile)?,
        connect_timeout: Duration::from_secs(cli.connect_timeout),
    };
    match cli.command {
        Command::Register(args) => commands::account::register(&ctx, args).await,
        Command::Login(args) => commands::account::login(&ctx, args).await,
        Command::Link(args) => commands::account::link(&ctx, args).await,
        Command::Contacts => commands::contacts::contacts(&ctx),
        Command::Verify(args) => commands::contacts::verify(&ctx, args),
        Command::Send(args) => commands::messages::send(&ctx, args).await,
        Command::Recv(args) => commands::messages::recv(&ctx, args).await,
        Command::History(args) => commands::history::history(&ctx, args),
        Command::Chat(args) => commands::chat::chat(&ctx, args).await,
        Command::Devices(args) => commands::devices::devices(&ctx, args).await,
        Command::Group(command) => commands::groups::group(&ctx, command).await,
        Command::File(command) => commands::files::file(&ctx, command).await,
    }
}
