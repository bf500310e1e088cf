//! Configuration precedence, validation and redaction.

use super::*;

#[test]
fn file_overrides_defaults_and_flags_override_file() {
    let from_file = Config::from_toml("max_queue_len = 5\nlisten = \"127.0.0.1:9000\"\n").unwrap();
    assert_eq!(from_file.max_queue_len, 5);
    assert_eq!(from_file.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(
        from_file.envelope_ttl_secs,
        Config::default().envelope_ttl_secs
    );
    let overrides = Overrides {
        max_queue_len: Some(7),
        ..Overrides::default()
    };
    let merged = from_file.apply(&overrides);
    assert_eq!(merged.max_queue_len, 7);
    assert_eq!(merged.listen, "127.0.0.1:9000".parse().unwrap());
}

#[test]
fn unknown_keys_and_bad_ranges_are_refused() {
    assert!(Config::from_toml("no_such_key = 1").is_err());
    let config = Config {
        max_envelope_len: 2 * 1024 * 1024,
        ..Config::default()
    };
    assert!(matches!(config.validate(), Err(ConfigError::Invalid(_))));
    assert!(Config::default().validate().is_ok());
}

#[test]
fn storage_and_redis_urls_are_checked_and_passwords_never_printed() {
    let config = Config::from_toml(
        "storage = \"postgres://microbot:hunter2@db:5432/microbot\"\nredis = \"redis://cache:6379/\"\n",
    )
    .unwrap();
    assert!(config.validate().is_ok());
    assert!(matches!(
        config.storage_backend(),
        Ok(StorageBackend::Postgres(_))
    ));
    let printed = format!("{config:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("postgres://microbot:***@db:5432/microbot"));
    let query = SecretUrl::new("postgres://db/microbot?user=m&password=hunter2&sslmode=disable");
    assert_eq!(
        query.redacted(),
        "postgres://db/microbot?user=m&password=***&sslmode=disable"
    );
    assert_eq!(SecretUrl::new("garbage:hunter2").redacted(), "***");
    let bad = Config {
        storage: Some(SecretUrl::new("mysql://x")),
        ..Config::default()
    };
    assert!(matches!(bad.validate(), Err(ConfigError::Invalid(_))));
    let bad = Config {
        redis: Some(SecretUrl::new("http://x")),
        ..Config::default()
    };
    assert!(matches!(bad.validate(), Err(ConfigError::Invalid(_))));
    assert_eq!(
        Config::default().storage_backend().unwrap(),
        StorageBackend::Sqlite
    );
}

#[test]
fn environment_and_flags_resolve_through_clap() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        overrides: Overrides,
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "max_queue_len = 5\nenvelope_ttl_secs = 9\n").unwrap();
    let cli = Cli::try_parse_from([
        "microbot-server",
        "--config",
        file.to_str().unwrap(),
        "--max-queue-len",
        "6",
    ])
    .unwrap();
    let config = Config::resolve(&cli.overrides).unwrap();
    assert_eq!(config.max_queue_len, 6, "flag beats file");
    assert_eq!(config.envelope_ttl_secs, 9, "file beats default");
}
