//! `microbot-server`: runs the Microbot server (`run`, the default), or
//! takes (`backup --to FILE`) and restores (`restore --from FILE`) backups.
//!
//! Configuration: defaults < `--config FILE` (TOML) < `MICROBOT_*`
//! environment variables < flags; `microbot-server --help` lists them all.
//! On start it prints the listen address, the certificate fingerprint
//! clients pin, and the storage, bus, metrics and webhook settings in
//! effect (passwords as `***`). SIGINT, SIGTERM and SIGHUP shut it down
//! gracefully (draining connections); SIGHUP does not reload the
//! configuration: restart the node to apply a change.
//!
//! Cluster nodes (`storage = "postgres://…"`, `redis = "redis://…"` or a
//! Redis Cluster's `redis = "redis+cluster://host:port,host:port/"`) share
//! one certificate (`--cert-pem` / `--key-pem`); docs/OPERATIONS.md.

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use microbot_server::{Config, Overrides, Server};

/// Shown after the options of `microbot-server --help`.
const PRECEDENCE: &str = "\
Configuration: each setting comes from, in increasing precedence, the
built-in default < the TOML file of --config < its MICROBOT_* environment
variable < its flag. MICROBOT_ALLOW_IPS= and MICROBOT_DENY_IPS= (empty)
count as unset: every address allowed, none refused. Passwords in --storage and
--redis URLs are never logged (printed as ***).

Signals: SIGINT, SIGTERM and SIGHUP drain connections and stop (exit 0);
nothing reloads the configuration: restart to apply a change.
Health: /healthz (alive) and /readyz (bus linked) on --metrics-listen.";

/// The help of `backup` (its own options, not the server's).
const BACKUP_HELP: &str = "\
{about-with-newline}
{usage-heading} microbot-server [--data-dir DIR | --config FILE] backup --to FILE

Options:
      --to <TO>          Backup file to write (replaced if it exists); its
                         directory must exist
      --data-dir <DIR>   Data directory to back up [env: MICROBOT_DATA_DIR]
      --config <FILE>    TOML file whose data_dir is used [env: MICROBOT_CONFIG]
  -h, --help             Print help

The server's other options are accepted and ignored.";

/// The help of `restore` (its own options, not the server's).
const RESTORE_HELP: &str = "\
{about-with-newline}
{usage-heading} microbot-server [--data-dir DIR | --config FILE] restore --from FILE [--force]

Options:
      --from <FROM>      Backup file written by `backup --to`
      --force            Replace an existing database in the data directory
      --data-dir <DIR>   Data directory to restore into [env: MICROBOT_DATA_DIR]
      --config <FILE>    TOML file whose data_dir is used [env: MICROBOT_CONFIG]
  -h, --help             Print help

The server's other options are accepted and ignored.";

#[derive(Parser)]
#[command(
    name = "microbot-server",
    version,
    about = "Microbot end-to-end encrypted messaging server",
    after_help = PRECEDENCE
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
    #[command(help_template = BACKUP_HELP)]
    Backup {
        /// Backup file to write (replaced if it exists).
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Restore a backup into the data directory (the server must be stopped).
    #[command(help_template = RESTORE_HELP)]
    Restore {
        /// Backup file written by `backup --to`.
        #[arg(long)]
        from: std::path::PathBuf,
        /// Replace an existing database in the data directory.
        #[arg(long)]
        force: bool,
    },
    /// Manage operator accounts of the admin dashboard (SPEC.md §18.7).
    Admin {
        #[command(subcommand)]
        action: microbot_server::admin::cli::AdminCommand,
    },
    /// Print the usage report (SPEC.md §14.1, §18.7) from the stored analytics.
    Report {
        /// First day, YYYY-MM-DD (UTC); the report runs to today.
        #[arg(long)]
        since: String,
        /// `json` or `csv`.
        #[arg(long, default_value = "json")]
        format: String,
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
    let cli = parse_cli();
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
        Command::Admin { action } => admin(&cli.overrides, action).await,
        Command::Report { since, format } => report(&cli.overrides, since, format).await,
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

/// `admin add|remove`: reads standard input, writes standard output.
async fn admin(
    overrides: &Overrides,
    action: microbot_server::admin::cli::AdminCommand,
) -> std::process::ExitCode {
    let config = match Config::resolve(overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let done = tokio::task::spawn_blocking(move || {
        microbot_server::admin::cli::run(
            &config,
            action,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
        )
    })
    .await;
    match done {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `report`: writes the report to standard output.
async fn report(overrides: &Overrides, since: String, format: String) -> std::process::ExitCode {
    let config = match Config::resolve(overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let done = tokio::task::spawn_blocking(move || {
        microbot_server::admin::report::run_cli(
            &config,
            &since,
            &format,
            &mut std::io::stdout().lock(),
        )
    })
    .await;
    match done {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// [`Cli::parse`], except that a list variable set to the empty string
/// (`MICROBOT_ALLOW_IPS=`) counts as unset instead of an invalid address.
fn parse_cli() -> Cli {
    let mut command = Cli::command();
    for (id, var) in [
        ("allow_ips", "MICROBOT_ALLOW_IPS"),
        ("deny_ips", "MICROBOT_DENY_IPS"),
    ] {
        if std::env::var_os(var).is_some_and(|v| v.to_string_lossy().trim().is_empty()) {
            command = command.mut_arg(id, |arg| arg.env(None::<&str>));
        }
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
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
    let settings = settings_in_effect(&config);
    let server = match Server::bind(config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Listen for the stop signals before announcing the server: a
    // supervisor that signals as soon as it reads the lines below must not
    // meet the default action (which kills without draining).
    let stop = shutdown_signal();
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
    for line in &settings {
        println!("{line}");
    }
    server.run_until(stop).await;
    println!("microbot-server stopped");
    std::process::ExitCode::SUCCESS
}

/// The storage, bus, metrics and webhook settings of `config`, one line
/// each, with every password replaced by `***`.
fn settings_in_effect(config: &Config) -> Vec<String> {
    use microbot_server::config::StorageBackend;
    let storage = match config.storage_backend() {
        Ok(StorageBackend::Postgres(url)) => format!(
            "storage: PostgreSQL {} (pool of {} connections)",
            url.redacted(),
            config.storage_pool_size
        ),
        _ => format!("storage: SQLite {}", config.database_path().display()),
    };
    let bus = match &config.redis {
        Some(url) => format!(
            "bus: Redis {} (namespace {}; not ready until linked, see /readyz)",
            url.redacted(),
            config.redis_namespace
        ),
        None => "bus: in-process (single node)".to_owned(),
    };
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let scheme = if addr.ip().is_loopback() {
                "http"
            } else {
                "https"
            };
            format!(
                "metrics: {scheme}://{addr}/metrics (also /healthz, /readyz, dashboard /admin/)"
            )
        }
        None => "metrics: off".to_owned(),
    };
    let webhooks = match &config.webhook_url {
        // The path may carry a gateway token: show where, not the path.
        Some(url) => format!(
            "webhooks: {} (timeout {} ms, {} retries, back-off from {} ms, {})",
            webhook_origin(url),
            config.webhook_timeout_ms,
            config.webhook_retries,
            config.webhook_backoff_base_ms,
            if config.webhook_secret.is_some() {
                "signed"
            } else {
                "unsigned"
            }
        ),
        None => "webhooks: off".to_owned(),
    };
    vec![storage, bus, metrics, webhooks]
}

/// `scheme://host:port/…` of a webhook URL (its path left out).
fn webhook_origin(url: &str) -> String {
    match microbot_server::WebhookTarget::parse(url, true) {
        Ok(target) => target.origin(),
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// Resolves on SIGINT, SIGTERM or SIGHUP (all drain; nothing reloads).
/// On Unix the handlers are installed by this call, not when the future is
/// first polled, so a signal sent right after start-up is caught too.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    async move {
        match signals {
            (Ok(mut int), Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: draining and stopping (the configuration is not reloaded; restart to apply changes)");
                    }
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Resolves on Ctrl-C (drains; nothing reloads).
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
