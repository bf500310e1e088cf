//! `microbot-server`: runs the Microbot server (`run`, the default), or
//! takes (`backup --to FILE`) and restores (`restore --from FILE`) backups.
//!
//! Configuration: defaults < `--config FILE` (TOML) < `MICROBOT_*`
//! environment variables < flags; `microbot-server --help` lists them all.
//! On start it prints the listen address and the certificate fingerprint
//! clients pin. SIGINT / SIGTERM shut it down gracefully.
//!
//! Cluster nodes (`storage = "postgres://…"`, `redis = "redis://…"`) share
//! one certificate (`--cert-pem` / `--key-pem`); docs/OPERATIONS.md.

use clap::{Parser, Subcommand};
use microbot_server::{Config, Overrides, Server};

#[derive(Parser)]
#[command(
    name = "microbot-server",
    version,
    about = "Microbot end-to-end encrypted messaging server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (default).
    Run,
    /// Take a consistent online backup of the data directory (safe while
    /// the server runs): FILE is the database snapshot, FILE.files/ holds
    /// attachments and the certificate.
    Backup {
        /// Backup file to write (replaced if it exists).
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Restore a backup into the data directory (the server must be stopped).
    Restore {
        /// Backup file written by `backup --to`.
        #[arg(long)]
        from: std::path::PathBuf,
        /// Replace an existing database in the data directory.
        #[arg(long)]
        force: bool,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never in a log file or journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.overrides).await,
        Command::Backup { to } => offline(&cli.overrides, |config| {
            let report = microbot_server::backup::backup(&config.data_dir, &to)?;
            println!(
                "backup written to {} ({} envelopes, {} attachments)",
                to.display(),
                report.envelopes,
                report.attachments
            );
            Ok(())
        }),
        Command::Restore { from, force } => offline(&cli.overrides, |config| {
            microbot_server::backup::restore(&from, &config.data_dir, force)?;
            println!(
                "restored {} into {}",
                from.display(),
                config.data_dir.display()
            );
            Ok(())
        }),
    }
}

fn offline(
    overrides: &Overrides,
    task: impl FnOnce(&Config) -> Result<(), microbot_server::backup::BackupError>,
) -> std::process::ExitCode {
    let config = match Config::resolve(overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    if !matches!(
        config.storage_backend(),
        Ok(microbot_server::config::StorageBackend::Sqlite)
    ) {
        eprintln!(
            "error: backup and restore cover the embedded SQLite storage; with PostgreSQL use \
             pg_dump / pg_basebackup and copy the shared attachments directory \
             (docs/OPERATIONS.md)"
        );
        return std::process::ExitCode::from(2);
    }
    match task(&config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(overrides: &Overrides) -> std::process::ExitCode {
    let config = match Config::resolve(overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let data_dir = config.data_dir.clone();
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = match server.local_addr() {
        Ok(addr) => addr.to_string(),
        Err(error) => format!("unknown ({error})"),
    };
    println!("microbot-server listening on {addr}");
    println!("data directory: {}", data_dir.display());
    if server.generated_certificate() {
        println!("generated a new self-signed certificate");
    }
    println!("certificate SHA-256 fingerprint: {}", server.fingerprint());
    server.run_until(shutdown_signal()).await;
    println!("microbot-server stopped");
    std::process::ExitCode::SUCCESS
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
