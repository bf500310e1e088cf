//! Start-up, certificate persistence, PEM files, the binary with env and
//! flags, and graceful shutdown (issue 4 point 1).

use crate::common;

use std::io::BufRead as _;
use std::process::{Command, Stdio};

use common::*;
use microbot_protocol::transport::{ErrorCode, client_frame::Request, response};
use microbot_server::Server;

#[tokio::test(flavor = "multi_thread")]
async fn first_start_creates_database_and_certificate_and_later_starts_reuse_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let config = microbot_server::Config {
        data_dir: data.clone(),
        ..test_config(dir.path())
    };
    let first = Server::bind(config.clone()).await.unwrap();
    assert!(first.generated_certificate());
    let fingerprint = first.fingerprint().to_owned();
    assert_eq!(fingerprint.len(), 64);
    for file in ["microbot.sqlite3", "cert.pem", "key.pem"] {
        assert!(data.join(file).exists(), "{file} created");
    }
    let pem = std::fs::read(data.join("cert.pem")).unwrap();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem)
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    assert_eq!(
        microbot_server::testing::endpoint::fingerprint(&der),
        fingerprint
    );
    drop(first);
    let second = Server::bind(config).await.unwrap();
    assert!(!second.generated_certificate());
    assert_eq!(second.fingerprint(), fingerprint, "certificate kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn pem_files_can_be_given_instead() {
    let pem_dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = pem_dir.path().join("my-cert.pem");
    let key_path = pem_dir.path().join("my-key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let expected = microbot_server::testing::endpoint::fingerprint(certified.cert.der());
    let server = TestServer::start_with(|c| {
        c.cert_pem = Some(cert_path.clone());
        c.key_pem = Some(key_path.clone());
    })
    .await;
    assert_eq!(server.fingerprint, expected);
    assert!(
        !server.dir.path().join("cert.pem").exists(),
        "nothing generated"
    );
    let mut client = server.client().await;
    register(&mut client, "xena").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_closes_connections_with_a_retry_hint() {
    let server = TestServer::start().await;
    let mut yan = new_device(&server, "yan").await;
    let stop = tokio::spawn(server.stop());
    let closed = yan.client.closed().await;
    let closing = closed.closing.unwrap();
    assert_eq!(closing.code, ErrorCode::Unavailable as i32);
    assert!(closing.retry_after_ms > 0);
    assert_eq!(closed.close_code, Some(ErrorCode::Unavailable as u64));
    stop.await.unwrap();
}

#[test]
fn help_lists_flags_and_environment_variables() {
    let out = Command::new(env!("CARGO_BIN_EXE_microbot-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--config",
        "MICROBOT_CONFIG",
        "--data-dir",
        "MICROBOT_DATA_DIR",
        "--listen",
        "--cert-pem",
        "--argon2-memory-kib",
        "--max-queue-len",
        "--envelope-ttl-secs",
        "--prekey-low-stock-threshold",
        "run",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_runs_with_no_subcommand_reads_env_file_and_flags_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-env");
    let config_file = dir.path().join("server.toml");
    // The file sets a port the flag overrides (flag > env/file).
    std::fs::write(
        &config_file,
        "listen = \"127.0.0.1:1\"\nargon2_memory_kib = 64\nargon2_iterations = 1\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_microbot-server"))
        .env("MICROBOT_DATA_DIR", &data)
        .env("MICROBOT_CONFIG", &config_file)
        .env("RUST_LOG", "warn")
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut addr = None;
    let mut fingerprint = None;
    while addr.is_none() || fingerprint.is_none() {
        let line = lines.next().unwrap().unwrap();
        if let Some(a) = line.strip_prefix("microbot-server listening on ") {
            addr = Some(a.parse::<std::net::SocketAddr>().unwrap());
        }
        if let Some(f) = line.strip_prefix("certificate SHA-256 fingerprint: ") {
            fingerprint = Some(f.to_owned());
        }
    }
    let (addr, fingerprint) = (addr.unwrap(), fingerprint.unwrap());
    assert_ne!(addr.port(), 1, "flag beats config file");
    assert!(
        data.join("microbot.sqlite3").exists(),
        "data dir from the environment"
    );
    assert!(data.join("cert.pem").exists());

    let mut client = Client::connect(addr, &fingerprint).await;
    let reply = client
        .request(Request::Register(
            microbot_protocol::transport::RegisterRequest {
                username: "zoe".into(),
                password: "password123".into(),
                bot: false,
            },
        ))
        .await;
    assert!(matches!(reply, response::Result::Register(_)), "{reply:?}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let closed = client.closed().await;
    assert_eq!(closed.close_code, Some(ErrorCode::Unavailable as u64));
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful exit: {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l == "microbot-server stopped"),
        "{rest:?}"
    );
}

/// A start that fails says which step failed, with the component's own
/// message (the embedder needs none of the server's internal types).
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_names_its_step_and_keeps_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    // The database file is not a database: opening the store fails.
    std::fs::write(dir.path().join("microbot.sqlite3"), [0x5a; 4096]).unwrap();
    match Server::bind(test_config(dir.path())).await {
        Err(microbot_server::StartError::Storage(cause)) => {
            let text = cause.to_string();
            assert!(!text.is_empty());
            let outer = microbot_server::StartError::Storage(cause);
            assert_eq!(outer.to_string(), text, "the step shows the cause's words");
        }
        other => panic!("expected a storage failure, got {:?}", other.err()),
    }
    // A certificate file that is not PEM: the endpoint step fails.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), b"not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), b"not a key").unwrap();
    match Server::bind(test_config(dir.path())).await {
        Err(microbot_server::StartError::Endpoint(cause)) => {
            assert!(cause.to_string().contains("cert.pem"), "{cause}");
        }
        other => panic!("expected an endpoint failure, got {:?}", other.err()),
    }
}
