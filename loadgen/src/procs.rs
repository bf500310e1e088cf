//! Child processes of a benchmark run: the microbot server binary (alone
//! on SQLite, or as one node of a PostgreSQL + Redis cluster), the relay
//! floor (`microbot-loadgen relay-serve`) and mosquitto, each in its own
//! temporary directory and killed when dropped; and what a process costs,
//! read from `/proc` (Linux): resident memory and CPU time.
//!
//! Not owned here: what is run against them, the cluster's database
//! schema (cluster.rs).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{LoadError, LoadResult};
use crate::wire::Target;

/// Resident set size of `pid` in bytes (`VmRSS`).
///
/// # Errors
/// [`LoadError::Process`] when the status file is missing or has no `VmRSS`.
pub fn rss_bytes(pid: u32) -> LoadResult<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| LoadError::Process {
            name: pid.to_string(),
            reason: format!("cannot read /proc status: {e}"),
        })?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| LoadError::Process {
            name: pid.to_string(),
            reason: "no VmRSS line".to_owned(),
        })
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux
/// for every architecture it exposes to user space).
const USER_HZ: u64 = 100;

/// CPU time (user + system) `pid` has used so far, from `/proc/<pid>/stat`;
/// `None` when the process is gone or the file is unreadable.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // fields after its closing parenthesis, where field 3 (state) is first.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// CPU time of every process whose command name (`/proc/<pid>/comm`) is
/// `name`, by pid: e.g. all PostgreSQL backends (`postgres`) or
/// `redis-server`. Empty when `/proc` is unreadable.
pub fn cpu_times_named(name: &str) -> HashMap<u32, Duration> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .filter_map(|pid| Some((pid, cpu_time(pid)?)))
        .collect()
}

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: std::process::Child,
    name: String,
}

impl ChildGuard {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process that prints `... listening on ADDR` and
/// `certificate SHA-256 fingerprint: HEX` on stdout (the microbot server
/// and `microbot-loadgen relay-serve` both do).
#[derive(Debug)]
pub struct QuicProcess {
    /// Where to connect.
    pub target: Target,
    /// The child.
    pub child: ChildGuard,
    /// Its data directory (removed on drop, after the child is killed).
    pub dir: tempfile::TempDir,
}

impl QuicProcess {
    /// Starts `program args…` and waits (up to 60 s) for its address and pin.
    ///
    /// # Errors
    /// [`LoadError::Process`] if it does not start or exits first.
    pub async fn spawn(
        program: &Path,
        args: Vec<String>,
        dir: tempfile::TempDir,
    ) -> LoadResult<Self> {
        let name = program.display().to_string();
        let mut child = Command::new(program)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| LoadError::Process {
                name: name.clone(),
                reason: format!("cannot start: {e}"),
            })?;
        let stdout = child.stdout.take();
        let guard = ChildGuard {
            child,
            name: name.clone(),
        };
        let stdout = stdout.ok_or_else(|| LoadError::Process {
            name: name.clone(),
            reason: "no stdout".to_owned(),
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The reader thread keeps draining stdout for the child's whole life
        // so the pipe never fills up.
        std::thread::spawn(move || {
            let mut addr = None;
            let mut fingerprint = None;
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, a)) = line.split_once("listening on ") {
                    addr = a.trim().parse::<SocketAddr>().ok();
                }
                if let Some((_, f)) = line.split_once("fingerprint: ") {
                    fingerprint = Some(f.trim().to_owned());
                }
                if let (Some(a), Some(f)) = (addr, fingerprint.clone())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(Target {
                        addr: a,
                        fingerprint: f,
                    });
                }
            }
        });
        let target = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .map_err(|_| LoadError::Process {
                name: name.clone(),
                reason: "did not print its address and fingerprint within 60 s".to_owned(),
            })?
            .map_err(|_| LoadError::Process {
                name,
                reason: "exited before printing its address and fingerprint".to_owned(),
            })?;
        Ok(Self {
            target,
            child: guard,
            dir,
        })
    }
}

/// Flags that make the server fit for load from one IP address: rate
/// limits off, connection caps raised, cheap argon2 (only provisioning
/// hashes passwords; no measured workload does).
pub fn bench_server_flags(data_dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--argon2-memory-kib".into(),
        "64".into(),
        "--argon2-iterations".into(),
        "1".into(),
        "--max-connections".into(),
        "100000".into(),
        "--max-connections-per-ip".into(),
        "100000".into(),
        "--totp-skew-steps".into(),
        "2".into(),
        // A backlog from one sender may fill a whole queue under load.
        "--queue-sender-share-percent".into(),
        "100".into(),
    ];
    for rate in [
        "--rate-login-per-ip",
        "--rate-login-per-account",
        "--rate-register-per-ip",
        "--rate-send-per-account",
        "--rate-prekey-fetch-per-account",
        "--rate-upload-per-account",
        "--rate-group-change-per-account",
        "--rate-group-change-per-group",
        "--rate-prekey-upload-per-account",
        "--rate-prekey-fetch-per-target",
    ] {
        args.push(rate.into());
        args.push("0".into());
    }
    args
}

/// Starts the microbot server binary with [`bench_server_flags`] in a fresh temp dir.
///
/// # Errors
/// As [`QuicProcess::spawn`].
pub async fn spawn_server(binary: &Path) -> LoadResult<QuicProcess> {
    let dir = tempfile::tempdir().map_err(LoadError::io("creating a server data dir"))?;
    let args = bench_server_flags(dir.path());
    QuicProcess::spawn(binary, args, dir).await
}

/// What every node of one cluster shares (SPEC.md §18.6): the database,
/// the bus, the attachments directory and the certificate clients pin.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// `postgres://…` URL, e.g. with a `search_path` of its own.
    pub storage_url: String,
    /// `redis://…` URL.
    pub redis_url: String,
    /// Redis key prefix of this cluster.
    pub namespace: String,
    /// The directory every node keeps attachment files in.
    pub attachments_dir: PathBuf,
    /// PEM certificate every node presents.
    pub cert_pem: PathBuf,
    /// Its PEM private key.
    pub key_pem: PathBuf,
    /// PostgreSQL connections per node; `None`: the server's default.
    pub pool_size: Option<u32>,
}

/// Starts one cluster node: the server binary with [`bench_server_flags`]
/// and `spec`'s shared storage, bus, attachments and certificate, in a
/// fresh temp dir of its own.
///
/// # Errors
/// As [`QuicProcess::spawn`].
pub async fn spawn_node(binary: &Path, spec: &NodeSpec) -> LoadResult<QuicProcess> {
    let dir = tempfile::tempdir().map_err(LoadError::io("creating a node data dir"))?;
    let mut args = bench_server_flags(dir.path());
    for (flag, value) in [
        ("--storage", spec.storage_url.clone()),
        ("--redis", spec.redis_url.clone()),
        ("--redis-namespace", spec.namespace.clone()),
        (
            "--attachments-dir",
            spec.attachments_dir.display().to_string(),
        ),
        ("--cert-pem", spec.cert_pem.display().to_string()),
        ("--key-pem", spec.key_pem.display().to_string()),
    ] {
        args.push(flag.into());
        args.push(value);
    }
    if let Some(size) = spec.pool_size {
        args.push("--storage-pool-size".into());
        args.push(size.to_string());
    }
    QuicProcess::spawn(binary, args, dir).await
}

/// Starts this binary's `relay-serve` subcommand.
///
/// # Errors
/// As [`QuicProcess::spawn`].
pub async fn spawn_relay(loadgen: &Path) -> LoadResult<QuicProcess> {
    let dir = tempfile::tempdir().map_err(LoadError::io("creating a relay dir"))?;
    QuicProcess::spawn(
        loadgen,
        vec![
            "relay-serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ],
        dir,
    )
    .await
}

/// A running mosquitto broker with persistence on, on loopback.
#[derive(Debug)]
pub struct Mosquitto {
    /// TCP address.
    pub addr: SocketAddr,
    /// The child.
    pub child: ChildGuard,
    /// Config and persistence directory.
    pub dir: tempfile::TempDir,
}

/// Starts `mosquitto` (from `PATH` unless `binary` is given) with
/// persistence in a temp dir, listening on a free loopback port.
///
/// # Errors
/// [`LoadError::Process`] when it is not installed or does not listen within 10 s.
pub async fn spawn_mosquitto(binary: Option<&Path>) -> LoadResult<Mosquitto> {
    let dir = tempfile::tempdir().map_err(LoadError::io("creating a mosquitto dir"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(LoadError::io("finding a free port"))?
        .port();
    let conf = dir.path().join("mosquitto.conf");
    let config = format!(
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         persistence true\n\
         persistence_location {}/\n\
         max_queued_messages 1000000\n\
         max_inflight_messages 1000\n\
         set_tcp_nodelay true\n",
        dir.path().display()
    );
    std::fs::write(&conf, config).map_err(LoadError::io("writing mosquitto.conf"))?;
    let program: PathBuf = binary.map_or_else(|| PathBuf::from("mosquitto"), Path::to_path_buf);
    let child = Command::new(&program)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| LoadError::Process {
            name: program.display().to_string(),
            reason: format!("cannot start (is the mosquitto package installed?): {e}"),
        })?;
    let mut child = ChildGuard {
        child,
        name: "mosquitto".to_owned(),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(Mosquitto { addr, child, dir });
        }
        if !child.running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LoadError::Process {
        name: "mosquitto".to_owned(),
        reason: "not listening within 10 s".to_owned(),
    })
}

/// Where Debian's `rabbitmq-server` package puts the broker's own start
/// script (the one on `PATH`, `/usr/sbin/rabbitmq-server`, is a wrapper
/// that switches to the `rabbitmq` user, who cannot use our temp dir).
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// The RabbitMQ start script to use: `binary` if given and present, else
/// [`RABBITMQ_SERVER`] if installed; `None` when there is none.
pub fn rabbitmq_server(binary: Option<&Path>) -> Option<PathBuf> {
    let path = binary.map_or_else(|| PathBuf::from(RABBITMQ_SERVER), Path::to_path_buf);
    path.is_file().then_some(path)
}

/// The installed RabbitMQ version, from the name of Debian's
/// `/usr/lib/rabbitmq/lib/rabbitmq_server-X.Y.Z` directory; `None` if absent.
pub fn rabbitmq_version() -> Option<String> {
    std::fs::read_dir("/usr/lib/rabbitmq/lib")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("rabbitmq_server-")
                .map(str::to_owned)
        })
}

/// A private RabbitMQ node on loopback: its own node name, ports, Erlang
/// port mapper (epmd) port, cookie, configuration and data under a temp
/// dir. Dropping it kills the node's whole process group and stops its
/// epmd, so nothing is left running.
#[derive(Debug)]
pub struct Rabbitmq {
    /// AMQP 0-9-1 address (user `guest`).
    pub addr: SocketAddr,
    /// The start script (leader of the node's process group).
    pub child: ChildGuard,
    /// The port of the epmd this node started.
    epmd_port: u16,
    /// Configuration, Raft logs, logs and cookie.
    pub dir: tempfile::TempDir,
}

impl Drop for Rabbitmq {
    fn drop(&mut self) {
        // The start script runs the Erlang VM as a background job in its
        // own process group (see spawn_rabbitmq): kill them together.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.pid())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.child.wait();
        // epmd daemonised itself out of the group; stop it by its port.
        let _ = Command::new("epmd")
            .args(["-port", &self.epmd_port.to_string(), "-kill"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Free loopback TCP ports, all distinct (held together while picked).
fn free_ports<const N: usize>() -> LoadResult<[u16; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(LoadError::io("finding free ports"))?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(LoadError::io("finding free ports"))?
            .port();
    }
    Ok(ports)
}

/// Starts a private RabbitMQ node (`binary`, default [`RABBITMQ_SERVER`])
/// listening for AMQP on a free loopback port, with no plugins, and waits
/// (up to 90 s; it boots in about 10 s on 2 cores) until it accepts
/// connections. Quorum queues keep their Raft logs in the temp dir, on the
/// same disk as the microbot server's temp data dir.
///
/// # Errors
/// [`LoadError::Process`] when it is not installed, exits, or does not
/// listen in time.
pub async fn spawn_rabbitmq(binary: Option<&Path>) -> LoadResult<Rabbitmq> {
    use std::os::unix::process::CommandExt as _;
    let program = rabbitmq_server(binary).ok_or_else(|| LoadError::Process {
        name: "rabbitmq-server".to_owned(),
        reason: format!(
            "{} not found (apt-get install rabbitmq-server)",
            binary.map_or(RABBITMQ_SERVER.into(), |b| b.display().to_string())
        ),
    })?;
    let dir = tempfile::tempdir().map_err(LoadError::io("creating a RabbitMQ dir"))?;
    let [port, dist_port, epmd_port] = free_ports::<3>()?;
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(
        dir.path().join("rabbitmq.conf"),
        format!(
            "listeners.tcp.default = 127.0.0.1:{port}\n\
             log.console = false\n\
             log.file.level = warning\n"
        ),
    )
    .map_err(LoadError::io("writing rabbitmq.conf"))?;
    std::fs::write(dir.path().join("enabled_plugins"), "[].\n")
        .map_err(LoadError::io("writing enabled_plugins"))?;
    let out = std::fs::File::create(dir.path().join("out.log"))
        .map_err(LoadError::io("creating the RabbitMQ log"))?;
    let err = out
        .try_clone()
        .map_err(LoadError::io("creating the RabbitMQ log"))?;
    let child = Command::new(&program)
        .current_dir(dir.path())
        // The Erlang cookie goes to $HOME: keep it in the temp dir.
        .env("HOME", dir.path())
        .env(
            "RABBITMQ_NODENAME",
            format!("microbot-bench-{port}@localhost"),
        )
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", dist_port.to_string())
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        // Lets `epmd -kill` stop it even if the node is still registered.
        .env("ERL_EPMD_RELAXED_COMMAND_CHECK", "1")
        .env(
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
            "-kernel inet_dist_use_interface {127,0,0,1}",
        )
        .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
        .env("RABBITMQ_CONF_ENV_FILE", path("no-env-file"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
        .env("RABBITMQ_PLUGINS_EXPAND_DIR", path("plugins"))
        .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
        .env("RABBITMQ_LOG_BASE", path("log"))
        .env("RABBITMQ_PID_FILE", path("rabbitmq.pid"))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| LoadError::Process {
            name: program.display().to_string(),
            reason: format!("cannot start: {e}"),
        })?;
    let mut broker = Rabbitmq {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        child: ChildGuard {
            child,
            name: "rabbitmq-server".to_owned(),
        },
        epmd_port,
        dir,
    };
    for _ in 0..900 {
        if tokio::net::TcpStream::connect(broker.addr).await.is_ok() {
            return Ok(broker);
        }
        if !broker.child.running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(broker.dir.path().join("out.log")).unwrap_or_default();
    Err(LoadError::Process {
        name: "rabbitmq-server".to_owned(),
        reason: format!(
            "not listening within 90 s; its output ends: {}",
            log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        ),
    })
}
