//! Profiles: one directory per local account device, under
//! `<data dir>/microbot/profiles/<name>` (the user's data directory as the
//! platform defines it, or `--data-dir` / `MICROBOT_HOME` in its place).
//!
//! A profile holds `profile.json` (username, server address, certificate
//! pin and whether the account is confirmed; no secret) and the SDK's store
//! `store.sqlite3` (keys, sessions, history; encrypted at rest when
//! `MICROBOT_PASSPHRASE` is set when it is created). Not owned here: what
//! is inside the store (the SDK).

use std::fs;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};

use microbot_client::{ServerConfig, StoreConfig};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Environment variable holding the store passphrase.
pub const PASSPHRASE_ENV: &str = "MICROBOT_PASSPHRASE";

/// What the CLI remembers about a profile besides the SDK store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileMeta {
    /// The account's username.
    pub username: String,
    /// `host:port` of the server (comma-separated for a cluster), as given.
    pub server: String,
    /// SHA-256 of the server's certificate (hex).
    pub cert_sha256: String,
    /// False between `register` and the first accepted TOTP code.
    pub confirmed: bool,
    /// True once this device is enrolled (the store holds the account).
    pub enrolled: bool,
}

/// Resolves `addr` (`host:port`, or the comma-separated addresses of a
/// cluster's nodes, SPEC.md §12.1) and pins `cert_sha256`.
pub fn server_config(addr: &str, cert_sha256: &str) -> Result<ServerConfig, CliError> {
    let sockets = addr
        .split(',')
        .map(|one| resolve(one.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    ServerConfig::with_addresses(sockets, cert_sha256).map_err(|e| {
        CliError::Input(format!(
            "--cert-sha256: {e} (expected the 64 hex digits the server prints at start)"
        ))
    })
}

/// A malformed address (no port, bad port) is the user's input; a host
/// name that does not resolve is the server being unreachable (exit 4).
fn resolve(addr: &str) -> Result<SocketAddr, CliError> {
    if let Ok(socket) = addr.parse() {
        return Ok(socket);
    }
    let unreachable = |reason: String| CliError::Unreachable {
        addr: addr.to_owned(),
        reason,
    };
    addr.to_socket_addrs()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => {
                CliError::Input(format!("server address {addr:?}: {e} (expected host:port)"))
            }
            _ => unreachable(format!("the host name does not resolve ({e})")),
        })?
        .next()
        .ok_or_else(|| unreachable("the host name resolves to no address".into()))
}

/// One profile directory.
#[derive(Clone, Debug)]
pub struct Profile {
    name: String,
    dir: PathBuf,
}

impl Profile {
    /// The profile `name` under `root` (`--data-dir`), or under the user's
    /// data directory.
    pub fn locate(root: Option<&Path>, name: &str) -> Result<Self, CliError> {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && !name.starts_with('.');
        if !valid {
            return Err(CliError::Input(format!(
                "invalid profile name {name:?}: use 1 to 64 of A-Z a-z 0-9 _ - ."
            )));
        }
        let root = match root {
            Some(root) => root.to_owned(),
            None => user_data_dir()
                .ok_or_else(|| {
                    CliError::Input(
                        "no user data directory on this system: pass --data-dir or set MICROBOT_HOME"
                            .into(),
                    )
                })?
                .join("microbot"),
        };
        Ok(Self {
            name: name.to_owned(),
            dir: root.join("profiles").join(name),
        })
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The profile's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join("profile.json")
    }

    /// The SDK store of this profile, encrypted with `MICROBOT_PASSPHRASE`
    /// when set.
    pub fn store_config(&self) -> StoreConfig {
        let store = StoreConfig::new(self.dir.join("store.sqlite3"));
        match std::env::var(PASSPHRASE_ENV) {
            Ok(passphrase) if !passphrase.is_empty() => store.with_passphrase(passphrase),
            _ => store,
        }
    }

    /// The profile's metadata, if the profile exists.
    pub fn load(&self) -> Result<Option<ProfileMeta>, CliError> {
        let path = self.meta_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CliError::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CliError::Other(format!("{} is damaged: {e}", path.display())))
    }

    /// The metadata of an enrolled profile.
    pub fn load_enrolled(&self) -> Result<ProfileMeta, CliError> {
        match self.load()? {
            Some(meta) if meta.enrolled => Ok(meta),
            _ => Err(CliError::NoProfile(self.name.clone())),
        }
    }

    /// Writes the metadata (atomically: a temporary file renamed over it),
    /// creating the directory (private to the user) if needed.
    pub fn save(&self, meta: &ProfileMeta) -> Result<(), CliError> {
        create_private_dir(&self.dir)?;
        let path = self.meta_path();
        let tmp = self.dir.join("profile.json.tmp");
        let text = serde_json::to_string_pretty(meta)
            .map_err(|e| CliError::Other(format!("encoding profile: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| CliError::io(format!("writing {}", path.display()), e))
    }

    /// Removes a store left by an enrolment that failed half-way, so the
    /// next attempt starts clean. Only called when no account was enrolled.
    pub fn remove_unused_store(&self) {
        let store = self.dir.join("store.sqlite3");
        for suffix in ["", "-wal", "-shm"] {
            let mut path = store.clone().into_os_string();
            path.push(suffix);
            let _ = fs::remove_file(PathBuf::from(path));
        }
    }
}

/// The user's data directory, as the `dirs` crate defines it (without its
/// MPL-licensed dependency): `$XDG_DATA_HOME` or `~/.local/share` on Linux
/// and other Unix systems, `~/Library/Application Support` on macOS,
/// `%APPDATA%` on Windows.
fn user_data_dir() -> Option<PathBuf> {
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if cfg!(windows) {
        return env_dir("APPDATA");
    }
    let home = env_dir("HOME");
    if cfg!(target_os = "macos") {
        return home.map(|h| h.join("Library").join("Application Support"));
    }
    env_dir("XDG_DATA_HOME").or_else(|| home.map(|h| h.join(".local").join("share")))
}

fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_given_as_comma_separated_addresses() {
        let pin = "ab".repeat(32);
        let one = server_config("127.0.0.1:7447", &pin).unwrap();
        assert_eq!(one.addresses().len(), 1);
        let three = server_config("127.0.0.1:7447, 127.0.0.2:7447,127.0.0.3:7447", &pin).unwrap();
        let ports: Vec<String> = three.addresses().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            ports,
            ["127.0.0.1:7447", "127.0.0.2:7447", "127.0.0.3:7447"]
        );
        assert!(server_config("127.0.0.1:7447,", &pin).is_err());
    }

    #[test]
    fn profile_names_cannot_escape_the_profiles_directory() {
        let root = Path::new("/tmp/x");
        for bad in ["", "..", "../a", "a/b", ".hidden", "a b"] {
            assert!(Profile::locate(Some(root), bad).is_err(), "{bad:?}");
        }
        let profile = Profile::locate(Some(root), "alice-2").unwrap();
        assert_eq!(profile.dir(), Path::new("/tmp/x/profiles/alice-2"));
    }

    #[test]
    fn the_default_root_is_the_user_data_directory() {
        let Some(data) = user_data_dir() else {
            return;
        };
        assert!(data.is_absolute());
        let profile = Profile::locate(None, "work").unwrap();
        assert_eq!(
            profile.dir(),
            data.join("microbot").join("profiles").join("work")
        );
    }

    #[test]
    fn metadata_round_trips_and_a_missing_profile_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::locate(Some(dir.path()), "p").unwrap();
        assert_eq!(profile.load().unwrap(), None);
        assert!(matches!(
            profile.load_enrolled(),
            Err(CliError::NoProfile(_))
        ));
        let meta = ProfileMeta {
            username: "alice".into(),
            server: "127.0.0.1:7447".into(),
            cert_sha256: "00".repeat(32),
            confirmed: true,
            enrolled: true,
        };
        profile.save(&meta).unwrap();
        assert_eq!(profile.load().unwrap(), Some(meta.clone()));
        assert_eq!(profile.load_enrolled().unwrap(), meta);
    }
}
