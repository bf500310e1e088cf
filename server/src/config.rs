//! Server configuration (SPEC.md §12.1 "Deployment").
//!
//! Precedence, lowest first: built-in defaults < TOML config file
//! (`--config FILE`, or `MICROBOT_CONFIG`) < environment variables
//! `MICROBOT_*` < command-line flags. Flags and environment variables are one
//! clap argument each (clap reads the variable when the flag is absent), so
//! `--help` lists both.
//!
//! Not owned here: what the values mean at run time (each module documents
//! its own limit).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

/// Default UDP listen address: loopback only, so a server started without
/// configuration is not exposed. Deployments set `--listen 0.0.0.0:7447`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7447";

/// The complete, resolved configuration of one server.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding `microbot.sqlite3` and the generated certificate.
    pub data_dir: PathBuf,
    /// UDP address the QUIC endpoint binds (port 0: any free port).
    pub listen: SocketAddr,
    /// PEM certificate chain to serve instead of the generated one.
    pub cert_pem: Option<PathBuf>,
    /// PEM private key matching `cert_pem`.
    pub key_pem: Option<PathBuf>,
    /// DNS name put in the generated certificate.
    pub server_name: String,
    /// Argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id iterations.
    pub argon2_iterations: u32,
    /// Argon2id parallelism.
    pub argon2_parallelism: u32,
    /// TOTP steps accepted either side of the current one.
    pub totp_skew_steps: u8,
    /// Most envelopes queued for one device.
    pub max_queue_len: u32,
    /// Seconds after which a queued envelope is purged.
    pub envelope_ttl_secs: u64,
    /// Seconds between two sweeps that delete expired envelopes.
    pub purge_interval_secs: u64,
    /// Largest ciphertext of one envelope, in bytes.
    pub max_envelope_len: u32,
    /// A low-stock push is sent when a device has fewer one-time prekeys.
    pub prekey_low_stock_threshold: u32,
    /// Largest frame body accepted or sent, in bytes.
    pub max_frame_len: u32,
    /// Seconds a draining shutdown waits for connections to finish.
    pub shutdown_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("microbot-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7447)),
            cert_pem: None,
            key_pem: None,
            server_name: "localhost".to_owned(),
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            totp_skew_steps: 1,
            max_queue_len: 10_000,
            envelope_ttl_secs: 30 * 24 * 3600,
            purge_interval_secs: 60,
            max_envelope_len: 256 * 1024,
            prekey_low_stock_threshold: 10,
            max_frame_len: 1024 * 1024,
            shutdown_grace_secs: 10,
        }
    }
}

/// Errors resolving the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for [`Config`].
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// A value is out of its allowed range.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
}

/// Overrides from flags and `MICROBOT_*` environment variables.
#[derive(Args, Clone, Debug, Default)]
pub struct Overrides {
    /// TOML config file (keys are the long flag names with '_' for '-').
    #[arg(long, env = "MICROBOT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (database, generated certificate) [default: microbot-data].
    #[arg(long, env = "MICROBOT_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// UDP listen address [default: 127.0.0.1:7447].
    #[arg(long, env = "MICROBOT_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain to use instead of the generated self-signed one.
    #[arg(long, env = "MICROBOT_CERT_PEM", global = true, requires = "key_pem")]
    pub cert_pem: Option<PathBuf>,
    /// PEM private key for --cert-pem.
    #[arg(long, env = "MICROBOT_KEY_PEM", global = true, requires = "cert_pem")]
    pub key_pem: Option<PathBuf>,
    /// DNS name in the generated certificate [default: localhost].
    #[arg(long, env = "MICROBOT_SERVER_NAME", global = true)]
    pub server_name: Option<String>,
    /// Argon2id memory cost in KiB [default: 19456].
    #[arg(long, env = "MICROBOT_ARGON2_MEMORY_KIB", global = true)]
    pub argon2_memory_kib: Option<u32>,
    /// Argon2id iterations [default: 2].
    #[arg(long, env = "MICROBOT_ARGON2_ITERATIONS", global = true)]
    pub argon2_iterations: Option<u32>,
    /// Argon2id parallelism [default: 1].
    #[arg(long, env = "MICROBOT_ARGON2_PARALLELISM", global = true)]
    pub argon2_parallelism: Option<u32>,
    /// TOTP steps accepted either side of the current one [default: 1].
    #[arg(long, env = "MICROBOT_TOTP_SKEW_STEPS", global = true)]
    pub totp_skew_steps: Option<u8>,
    /// Most envelopes queued per device [default: 10000].
    #[arg(long, env = "MICROBOT_MAX_QUEUE_LEN", global = true)]
    pub max_queue_len: Option<u32>,
    /// Envelope time-to-live in seconds [default: 2592000 = 30 days].
    #[arg(long, env = "MICROBOT_ENVELOPE_TTL_SECS", global = true)]
    pub envelope_ttl_secs: Option<u64>,
    /// Seconds between sweeps of expired envelopes [default: 60].
    #[arg(long, env = "MICROBOT_PURGE_INTERVAL_SECS", global = true)]
    pub purge_interval_secs: Option<u64>,
    /// Largest envelope ciphertext in bytes [default: 262144].
    #[arg(long, env = "MICROBOT_MAX_ENVELOPE_LEN", global = true)]
    pub max_envelope_len: Option<u32>,
    /// One-time prekey stock below which a low-stock push is sent [default: 10].
    #[arg(long, env = "MICROBOT_PREKEY_LOW_STOCK_THRESHOLD", global = true)]
    pub prekey_low_stock_threshold: Option<u32>,
    /// Largest frame body in bytes [default: 1048576].
    #[arg(long, env = "MICROBOT_MAX_FRAME_LEN", global = true)]
    pub max_frame_len: Option<u32>,
    /// Seconds a shutdown waits for connections to drain [default: 10].
    #[arg(long, env = "MICROBOT_SHUTDOWN_GRACE_SECS", global = true)]
    pub shutdown_grace_secs: Option<u64>,
}

impl Config {
    /// Reads a TOML config file over the defaults.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text over the defaults (missing keys keep their default).
    ///
    /// # Errors
    /// The TOML error, also for unknown keys.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Resolves defaults < file named by `overrides.config` < overrides.
    ///
    /// # Errors
    /// File errors and [`ConfigError::Invalid`] for out-of-range values.
    pub fn resolve(overrides: &Overrides) -> Result<Self, ConfigError> {
        let base = match &overrides.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        let config = base.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    /// Applies every override that is set.
    #[must_use]
    pub fn apply(mut self, o: &Overrides) -> Self {
        fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        set(&mut self.data_dir, &o.data_dir);
        set(&mut self.listen, &o.listen);
        if o.cert_pem.is_some() {
            self.cert_pem.clone_from(&o.cert_pem);
        }
        if o.key_pem.is_some() {
            self.key_pem.clone_from(&o.key_pem);
        }
        set(&mut self.server_name, &o.server_name);
        set(&mut self.argon2_memory_kib, &o.argon2_memory_kib);
        set(&mut self.argon2_iterations, &o.argon2_iterations);
        set(&mut self.argon2_parallelism, &o.argon2_parallelism);
        set(&mut self.totp_skew_steps, &o.totp_skew_steps);
        set(&mut self.max_queue_len, &o.max_queue_len);
        set(&mut self.envelope_ttl_secs, &o.envelope_ttl_secs);
        set(&mut self.purge_interval_secs, &o.purge_interval_secs);
        set(&mut self.max_envelope_len, &o.max_envelope_len);
        set(
            &mut self.prekey_low_stock_threshold,
            &o.prekey_low_stock_threshold,
        );
        set(&mut self.max_frame_len, &o.max_frame_len);
        set(&mut self.shutdown_grace_secs, &o.shutdown_grace_secs);
        self
    }

    /// Checks ranges that would otherwise fail later at run time.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_pem.is_some() != self.key_pem.is_some() {
            return Err(ConfigError::Invalid(
                "cert_pem and key_pem must be given together",
            ));
        }
        if argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .is_err()
        {
            return Err(ConfigError::Invalid("argon2 parameters out of range"));
        }
        if self.totp_skew_steps > 10 {
            return Err(ConfigError::Invalid("totp_skew_steps must be at most 10"));
        }
        if self.max_queue_len == 0 {
            return Err(ConfigError::Invalid("max_queue_len must be at least 1"));
        }
        if self.envelope_ttl_secs == 0 || self.purge_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "envelope_ttl_secs and purge_interval_secs must be at least 1",
            ));
        }
        if self.max_frame_len < 64 * 1024 {
            return Err(ConfigError::Invalid("max_frame_len must be at least 65536"));
        }
        // An envelope must fit in one fetch response together with its metadata.
        if u64::from(self.max_envelope_len) + 1024 > u64::from(self.max_frame_len)
            || self.max_envelope_len == 0
        {
            return Err(ConfigError::Invalid(
                "max_envelope_len must be at least 1 and at most max_frame_len - 1024",
            ));
        }
        Ok(())
    }

    /// Path of the SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("microbot.sqlite3")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_flags_override_file() {
        let from_file =
            Config::from_toml("max_queue_len = 5\nlisten = \"127.0.0.1:9000\"\n").unwrap();
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
}
