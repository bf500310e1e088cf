//! `microbot-conformance`: generate and check Microbot test vectors, and run
//! another implementation through them (SPEC.md §17).
//!
//! ```text
//! microbot-conformance vectors --impl CMD [--dir D] [--timeout S] [--allow-skip[=PERCENT]]
//! microbot-conformance adapter                  our implementation as an adapter
//! microbot-conformance export --out DIR         vectors/, schema/, proto/ as built in
//! microbot-conformance protos --out DIR         transport.proto and content.proto
//! microbot-conformance server --addr HOST:PORT --cert-sha256 HEX [--timeout S] [--allow-skip[=PERCENT]]
//! microbot-conformance generate [--dir D]       rewrite the JSON files (in a source checkout)
//! ```
//!
//! The vectors, schemas and protobuf files are built into the binary, so an
//! installed runner works from any directory; `--dir` runs other vector files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use microbot_test_vectors::adapter::serve;
use microbot_test_vectors::runner::{self, Event, Outcome, RunnerOptions};
use microbot_test_vectors::{bundle, kinds};

#[derive(Parser)]
#[command(
    name = "microbot-conformance",
    about = "Microbot test vectors and conformance runner (SPEC.md §17)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Regenerates every vector file from seeded RNGs (run in a source checkout).
    Generate {
        /// Directory of the vector files; by default test-vectors/vectors of
        /// the checkout this binary was built from.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Runs every vector against an implementation's adapter (JSON lines on stdin/stdout, SPEC.md §17.3).
    Vectors {
        /// Shell command that starts the adapter (run with `sh -c` in the current directory).
        #[arg(long = "impl")]
        implementation: String,
        /// Directory of vector files to run instead of the built-in ones.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seconds the adapter may take to answer one request (and to exit at the end).
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Accept skipped vectors: up to PERCENT of them (100 when given alone).
        /// Without it a single SKIP fails the run.
        #[arg(long = "allow-skip", value_name = "PERCENT", num_args = 0..=1, default_missing_value = "100", default_value_t = 0.0)]
        allow_skip: f64,
    },
    /// Serves the adapter protocol with this implementation.
    Adapter,
    /// Writes the built-in vectors/, schema/ and proto/ directories into DIR.
    Export {
        /// Output directory (created if needed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes the normative transport.proto and content.proto into DIR.
    Protos {
        /// Output directory (created if needed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Runs the scripted scenario against a live server (SPEC.md §17.4).
    Server {
        /// The server's QUIC address.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// SHA-256 fingerprint (hex) of the server certificate, as the server prints it.
        #[arg(long = "cert-sha256")]
        cert_sha256: String,
        /// Seconds to wait for the connection and for each answer.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Accept skipped checks: up to PERCENT of them (100 when given alone).
        #[arg(long = "allow-skip", value_name = "PERCENT", num_args = 0..=1, default_missing_value = "100", default_value_t = 0.0)]
        allow_skip: f64,
    },
}

/// Where `generate` writes by default: the source checkout's vector directory.
const SOURCE_VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors");

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Generate { dir } => generate(&dir.unwrap_or_else(|| SOURCE_VECTORS.into())),
        Command::Vectors {
            implementation,
            dir,
            timeout,
            allow_skip,
        } => {
            if !(timeout > 0.0 && timeout.is_finite() && (0.0..=100.0).contains(&allow_skip)) {
                eprintln!("vectors: --timeout must be positive and --allow-skip within 0..=100");
                return ExitCode::from(2);
            }
            let options = RunnerOptions {
                timeout: Duration::from_secs_f64(timeout),
                allowed_skip_share: allow_skip / 100.0,
            };
            check(&implementation, dir.as_deref(), &options)
        }
        Command::Server {
            addr,
            cert_sha256,
            timeout,
            allow_skip,
        } => {
            if !(timeout > 0.0 && timeout.is_finite() && (0.0..=100.0).contains(&allow_skip)) {
                eprintln!("server: --timeout must be positive and --allow-skip within 0..=100");
                return ExitCode::from(2);
            }
            let options = RunnerOptions {
                timeout: Duration::from_secs_f64(timeout),
                allowed_skip_share: allow_skip / 100.0,
            };
            live(addr, &cert_sha256, &options)
        }
        Command::Adapter => match serve(std::io::stdin().lock(), std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("adapter: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Export { out } => write_out(bundle::export(&out)),
        Command::Protos { out } => write_out(bundle::write_files(&out, bundle::PROTO_FILES)),
    }
}

fn write_out(written: Result<Vec<String>, bundle::BundleError>) -> ExitCode {
    match written {
        Ok(paths) => {
            for path in paths {
                println!("wrote {path}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn live(addr: std::net::SocketAddr, fingerprint: &str, options: &RunnerOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("server: {e}");
            println!("conformance: 0 passed, 0 failed, 0 skipped");
            return ExitCode::FAILURE;
        }
    };
    let checks = runtime.block_on(microbot_test_vectors::live::run_streamed(
        addr,
        fingerprint,
        options.timeout,
        &mut |check| match (&check.result, check.skipped) {
            (_, true) => println!("SKIP {} (not offered by this server)", check.name),
            (Ok(()), false) => println!("PASS {}", check.name),
            (Err(why), false) => println!("FAIL {}: {why}", check.name),
        },
    ));
    let results: Vec<runner::VectorResult> = checks
        .iter()
        .map(|check| runner::VectorResult {
            vector: check.name.to_owned(),
            outcome: match (&check.result, check.skipped) {
                (_, true) => Outcome::Skipped,
                (Ok(()), false) => Outcome::Passed,
                (Err(why), false) => Outcome::Failed(why.clone()),
            },
        })
        .collect();
    let report = runner::Report {
        results,
        ..runner::Report::default()
    };
    let (passed, failed, skipped) = report.tally();
    let verdict = report.verdict(options);
    if let Some(why) = &verdict {
        println!("NOT CONFORMANT: {why}");
    }
    println!("conformance: {passed} passed, {failed} failed, {skipped} skipped");
    if verdict.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn generate(dir: &std::path::Path) -> ExitCode {
    let files = match kinds::generate_all() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("generate: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("generate: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for file in files {
        let path = dir.join(format!("{}.json", file.kind));
        let text = microbot_test_vectors::vector::to_pretty_json(&file);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("generate: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {} ({} vectors)", path.display(), file.vectors.len());
    }
    ExitCode::SUCCESS
}

fn check(implementation: &str, dir: Option<&std::path::Path>, options: &RunnerOptions) -> ExitCode {
    let files = match dir {
        Some(dir) => microbot_test_vectors::vector::read_dir(dir).map_err(|e| e.to_string()),
        None => bundle::vector_files().map_err(|e| e.to_string()),
    };
    let files = match files {
        Ok(files) => files,
        Err(e) => {
            eprintln!("vectors: {e}");
            println!("conformance: 0 passed, 0 failed, 0 skipped");
            return ExitCode::FAILURE;
        }
    };
    let report = runner::run(implementation, &files, options, |event| match event {
        Event::Result(result) => match &result.outcome {
            Outcome::Passed => println!("PASS {}", result.vector),
            Outcome::Failed(why) => println!("FAIL {}: {why}", result.vector),
            Outcome::Skipped => println!(
                "SKIP {} (the adapter does not implement this kind)",
                result.vector
            ),
        },
        Event::Notice(notice) => println!("NOTE {}", notice.0),
    });
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("vectors: {e}");
            println!("conformance: 0 passed, 0 failed, 0 skipped");
            return ExitCode::FAILURE;
        }
    };
    let (passed, failed, skipped) = report.tally();
    let verdict = report.verdict(options);
    if let Some(why) = &verdict {
        println!("NOT CONFORMANT: {why}");
    }
    println!("conformance: {passed} passed, {failed} failed, {skipped} skipped");
    if verdict.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
