//! `microbot-conformance`: generate and check Microbot test vectors, and run
//! another implementation through them (SPEC.md §17).
//!
//! ```text
//! microbot-conformance generate [--dir test-vectors/vectors]   rewrite the JSON files
//! microbot-conformance vectors --impl CMD [--dir …]            run CMD as an adapter
//! microbot-conformance adapter                                 our implementation as an adapter
//! microbot-conformance server --addr HOST:PORT --cert-sha256 HEX  scripted checks of a live server
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use microbot_test_vectors::adapter::{Outcome, run_vectors, serve, tally};
use microbot_test_vectors::{VectorFile, kinds};

#[derive(Parser)]
#[command(
    name = "microbot-conformance",
    about = "Microbot test vectors and conformance runner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Regenerates every vector file from seeded RNGs.
    Generate {
        /// Directory of the vector files.
        #[arg(long, default_value = default_dir())]
        dir: PathBuf,
    },
    /// Runs every vector against an implementation's adapter (JSON lines on stdin/stdout).
    Vectors {
        /// Shell command that starts the adapter.
        #[arg(long = "impl")]
        implementation: String,
        /// Directory of the vector files.
        #[arg(long, default_value = default_dir())]
        dir: PathBuf,
    },
    /// Serves the adapter protocol with this implementation.
    Adapter,
    /// Runs the scripted scenario against a live server.
    Server {
        /// The server's QUIC address.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// SHA-256 fingerprint (hex) of the server certificate, as the server prints it.
        #[arg(long = "cert-sha256")]
        cert_sha256: String,
    },
}

const fn default_dir() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/vectors")
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Generate { dir } => generate(&dir),
        Command::Vectors {
            implementation,
            dir,
        } => check(&implementation, &dir),
        Command::Server { addr, cert_sha256 } => live(addr, &cert_sha256),
        Command::Adapter => match serve(std::io::stdin().lock(), std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("adapter: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn live(addr: std::net::SocketAddr, fingerprint: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let checks = runtime.block_on(microbot_test_vectors::live::run(addr, fingerprint));
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for check in &checks {
        match (&check.result, check.skipped) {
            (_, true) => {
                skipped += 1;
                println!("SKIP {} (not offered by this server)", check.name);
            }
            (Ok(()), false) => {
                passed += 1;
                println!("PASS {}", check.name);
            }
            (Err(why), false) => {
                failed += 1;
                println!("FAIL {}: {why}", check.name);
            }
        }
    }
    println!("server conformance: {passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
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

fn check(implementation: &str, dir: &std::path::Path) -> ExitCode {
    let files = match microbot_test_vectors::vector::read_dir(dir) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("vectors: {e}");
            return ExitCode::FAILURE;
        }
    };
    let results = match run_vectors(implementation, &files) {
        Ok(results) => results,
        Err(e) => {
            eprintln!("vectors: {e}");
            return ExitCode::FAILURE;
        }
    };
    for result in &results {
        match &result.outcome {
            Outcome::Passed => println!("PASS {}", result.vector),
            Outcome::Failed(why) => println!("FAIL {}: {why}", result.vector),
            Outcome::Skipped => println!("SKIP {}", result.vector),
        }
    }
    let (passed, failed, skipped) = tally(&results);
    println!("conformance: {passed} passed, {failed} failed, {skipped} skipped");
    let _: &[VectorFile] = &files;
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
