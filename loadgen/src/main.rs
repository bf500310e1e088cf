//! `microbot-loadgen`: runs one workload (`pairs`, `fanout`, `idle`,
//! `logins`), the floor (`relay`), the peers (`mqtt`, and `amqp`: the
//! durable one, RabbitMQ quorum queues + publisher confirms), everything
//! (`suite`) or workload (a) on PostgreSQL + Redis clusters (`cluster`),
//! and prints a Markdown table. Without `--server`, a workload
//! starts the `microbot-server` binary next to this one in a temp dir.
//! `relay-serve` hosts the relay floor as its own process (the suite uses it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use microbot_client::Transport;
use microbot_loadgen::cluster::{self, ClusterConfig};
use microbot_loadgen::cpu::CpuMeter;
use microbot_loadgen::driver::{DriveConfig, DriveReport};
use microbot_loadgen::procs::{self, QuicProcess};
use microbot_loadgen::provision::{provision, run_prefix};
use microbot_loadgen::relay::Relay;
use microbot_loadgen::stats::{Row, table};
use microbot_loadgen::suite::{self, CLIENT_ENDPOINTS, SETUP_CONCURRENCY, SuiteConfig};
use microbot_loadgen::wire::{Endpoints, Target};
use microbot_loadgen::{LoadError, LoadResult, amqp, idle, logins, mqtt, sdk};

#[derive(Parser)]
#[command(
    name = "microbot-loadgen",
    version,
    about = "Microbot load generator and server benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// Address of a running server (with --fingerprint); default: start one.
    #[arg(long, requires = "fingerprint")]
    server: Option<SocketAddr>,
    /// Its certificate SHA-256 fingerprint (hex).
    #[arg(long)]
    fingerprint: Option<String>,
    /// The server binary to start when --server is not given
    /// [default: microbot-server next to this binary].
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Devices (an even number for pairs).
    #[arg(long, default_value_t = 32)]
    devices: usize,
    /// Messages per device.
    #[arg(long, default_value_t = 400)]
    messages: u64,
    /// Unanswered sends per device.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Offered load in messages/s over all devices (default: saturation).
    #[arg(long)]
    rate: Option<f64>,
}

impl LoadArgs {
    fn drive(&self) -> DriveConfig {
        DriveConfig {
            window: self.window,
            rate: self.rate,
            ..DriveConfig::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Everything: relay floor, mosquitto, all workloads on the server; one table.
    Suite(SuiteArgs),
    /// (a) on 1, 2, 3… nodes sharing PostgreSQL + Redis, beside one node on SQLite.
    Cluster(ClusterArgs),
    /// (a) devices in pairs sending 256-byte messages.
    Pairs {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        load: LoadArgs,
        /// Go through microbot-client (crypto and client stores included)
        /// instead of sending pre-encrypted envelopes.
        #[arg(long)]
        crypto: bool,
        /// Transport: quic, or ws (the WebSocket binding, SPEC.md §12.13;
        /// goes through microbot-client, so it implies --crypto).
        #[arg(long, default_value = "quic", value_parser = ["quic", "ws"])]
        transport: String,
    },
    /// (b) group fan-out.
    Fanout {
        #[command(flatten)]
        target: TargetArgs,
        /// Members of the group.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Group messages in all.
        #[arg(long, default_value_t = 100)]
        messages: u64,
        /// Members that send.
        #[arg(long, default_value_t = 4)]
        senders: usize,
        /// Unanswered sends per sender.
        #[arg(long, default_value_t = 8)]
        window: usize,
    },
    /// (c) idle logged-in connections and server memory per connection.
    Idle {
        #[command(flatten)]
        target: TargetArgs,
        /// Connections to hold open.
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        /// Pid of the server, to read its RSS (automatic when this tool starts it).
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// (d) QUIC handshakes + logins per second.
    Logins {
        #[command(flatten)]
        target: TargetArgs,
        /// Logins in all.
        #[arg(long, default_value_t = 3000)]
        total: u64,
        /// Logins in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Distinct devices cycled through.
        #[arg(long, default_value_t = 100)]
        devices: usize,
    },
    /// The floor: workload (a) through a plain QUIC relay (no storage, no
    /// auth); with `--group`, workload (b) instead.
    Relay {
        #[command(flatten)]
        load: LoadArgs,
        /// Fan out to a group of this many connections (`--messages` group
        /// messages in all) instead of sending in pairs.
        #[arg(long)]
        group: Option<usize>,
        /// Members that send, with `--group`.
        #[arg(long, default_value_t = 4)]
        senders: usize,
        /// A relay already running (`relay-serve`); default: one in this process.
        #[arg(long, requires = "fingerprint")]
        relay: Option<SocketAddr>,
        /// Its certificate fingerprint.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Host the relay floor as a process; prints its address and fingerprint.
    RelayServe {
        /// UDP address to bind.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// The peer: workload (a) against mosquitto (QoS 1, persistence on).
    Mqtt {
        #[command(flatten)]
        load: LoadArgs,
        /// A broker already running; default: start mosquitto in a temp dir.
        #[arg(long)]
        broker: Option<SocketAddr>,
    },
    /// The durable peer: workload (a) against RabbitMQ (quorum queue per
    /// receiving device, publisher confirms, manual acks).
    Amqp {
        #[command(flatten)]
        load: LoadArgs,
        /// A broker already running (AMQP, user guest); default: start a
        /// private RabbitMQ node in a temp dir.
        #[arg(long)]
        broker: Option<SocketAddr>,
        /// RabbitMQ start script [default: /usr/lib/rabbitmq/bin/rabbitmq-server].
        #[arg(long)]
        rabbitmq_bin: Option<PathBuf>,
    },
}

#[derive(Args)]
struct SuiteArgs {
    /// microbot-server binary [default: next to this binary].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// mosquitto binary [default: from PATH].
    #[arg(long)]
    mosquitto_bin: Option<PathBuf>,
    /// Skip the mosquitto peer.
    #[arg(long)]
    no_mqtt: bool,
    /// RabbitMQ start script for the durable peer
    /// [default: /usr/lib/rabbitmq/bin/rabbitmq-server].
    #[arg(long)]
    rabbitmq_bin: Option<PathBuf>,
    /// Skip the durable peer (RabbitMQ).
    #[arg(long)]
    no_amqp: bool,
    /// Devices in workload (a).
    #[arg(long)]
    devices: Option<usize>,
    /// Messages per device in workload (a).
    #[arg(long)]
    messages: Option<u64>,
    /// Unanswered sends per device.
    #[arg(long)]
    window: Option<usize>,
    /// Idle connections in workload (c).
    #[arg(long)]
    idle: Option<usize>,
    /// Handshakes + logins in workload (d).
    #[arg(long)]
    logins: Option<u64>,
    /// SDK devices for the crypto-included run (0 skips it).
    #[arg(long)]
    sdk_devices: Option<usize>,
    /// The full sizes: 10 000 idle connections, 10 000 logins,
    /// 128 devices × 1000 messages.
    #[arg(long)]
    big: bool,
}

#[derive(Args)]
struct ClusterArgs {
    /// Node counts, each run in turn on a fresh schema and Redis namespace.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    nodes: Vec<usize>,
    /// PostgreSQL URL (a database the nodes may create a schema in).
    #[arg(long, env = "MICROBOT_TEST_POSTGRES", hide_env_values = true)]
    postgres: String,
    /// Redis URL.
    #[arg(long, env = "MICROBOT_TEST_REDIS", hide_env_values = true)]
    redis: String,
    /// redis+cluster:// URL of a Redis Cluster: also runs the largest node
    /// count on it (scripts/redis-cluster.sh prints one).
    #[arg(long, env = "MICROBOT_TEST_REDIS_CLUSTER", hide_env_values = true)]
    redis_cluster: Option<String>,
    /// microbot-server binary [default: next to this binary].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// nginx binary with the stream module: also runs the largest node
    /// count behind it (scripts/services.sh sets MICROBOT_NGINX).
    #[arg(long, env = "MICROBOT_NGINX")]
    nginx: Option<PathBuf>,
    /// PostgreSQL connections per node [default: the server's].
    #[arg(long)]
    pool_size: Option<u32>,
    /// Skip the single node on SQLite.
    #[arg(long)]
    no_sqlite: bool,
    /// Devices in pairs (even).
    #[arg(long, default_value_t = 32)]
    devices: usize,
    /// Messages per device.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Unanswered sends per device at saturation.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Also run each configuration at this offered load (messages/s over all devices).
    #[arg(long)]
    rate: Option<f64>,
}

fn sibling(name: &str) -> LoadResult<PathBuf> {
    let exe = std::env::current_exe().map_err(LoadError::io("finding this binary"))?;
    Ok(exe.with_file_name(name))
}

/// The target and, when this tool started it, the server process.
async fn target(args: &TargetArgs) -> LoadResult<(Target, Option<QuicProcess>)> {
    match (&args.server, &args.fingerprint) {
        (Some(addr), Some(fp)) => Ok((
            Target {
                addr: *addr,
                fingerprint: fp.clone(),
            },
            None,
        )),
        _ => {
            let bin = match &args.server_bin {
                Some(b) => b.clone(),
                None => sibling("microbot-server")?,
            };
            let process = procs::spawn_server(&bin).await?;
            Ok((process.target.clone(), Some(process)))
        }
    }
}

fn drive_row(workload: String, target: &str, mut r: DriveReport, unit: &str) -> Row {
    Row {
        workload,
        target: target.to_owned(),
        value: format!("{:.0} {unit}", r.delivered_rate()),
        latency: r.latency.summary(),
        note: r.delivery_note(),
    }
}

async fn run(cli: Cli) -> LoadResult<Vec<Row>> {
    match cli.command {
        Command::Suite(args) => {
            let server_bin = match args.server_bin {
                Some(b) => b,
                None => sibling("microbot-server")?,
            };
            let loadgen_bin =
                std::env::current_exe().map_err(LoadError::io("finding this binary"))?;
            let mut config = SuiteConfig::new(server_bin, loadgen_bin);
            config.mosquitto_bin = args.mosquitto_bin;
            config.skip_mqtt = args.no_mqtt;
            config.rabbitmq_bin = args.rabbitmq_bin;
            config.skip_amqp = args.no_amqp;
            if args.big {
                config.devices = 128;
                config.messages = 1000;
                config.idle = 10_000;
                config.logins = 10_000;
            }
            config.devices = args.devices.unwrap_or(config.devices);
            config.messages = args.messages.unwrap_or(config.messages);
            config.window = args.window.unwrap_or(config.window);
            config.idle = args.idle.unwrap_or(config.idle);
            config.logins = args.logins.unwrap_or(config.logins);
            config.sdk_devices = args.sdk_devices.unwrap_or(config.sdk_devices);
            let report = suite::run(&config).await?;
            println!("{}", report.render());
            Ok(Vec::new())
        }
        Command::Cluster(args) => {
            let server_bin = match args.server_bin {
                Some(b) => b,
                None => sibling("microbot-server")?,
            };
            let mut config = ClusterConfig::new(server_bin, args.postgres, args.redis);
            config.redis_cluster_url = args.redis_cluster;
            config.node_counts = args.nodes;
            config.sqlite_baseline = !args.no_sqlite;
            config.devices = args.devices;
            config.messages = args.messages;
            config.drive.window = args.window;
            config.rate = args.rate;
            config.pool_size = args.pool_size;
            config.nginx_bin = args.nginx;
            let report = cluster::run(&config).await?;
            println!("{}", report.render());
            Ok(Vec::new())
        }
        Command::Pairs {
            target: t,
            load,
            crypto,
            transport,
        } => {
            let (target, _server) = target(&t).await?;
            let drive = load.drive();
            let shape = format!("(a) {} devices × {} msgs", load.devices, load.messages);
            let (transport, label) = match transport.as_str() {
                "ws" => (
                    Transport::WebSocket,
                    "server via SDK (crypto) over WebSocket",
                ),
                _ => (Transport::Quic, "server via SDK (crypto)"),
            };
            if crypto || transport == Transport::WebSocket {
                let r =
                    sdk::run_pairs(&target, transport, load.devices, load.messages, &drive).await?;
                return Ok(vec![drive_row(shape, label, r, "msg/s")]);
            }
            let endpoints = Arc::new(Endpoints::new(&target, CLIENT_ENDPOINTS)?);
            let devices =
                provision(&endpoints, &run_prefix(), load.devices, SETUP_CONCURRENCY).await?;
            let r = suite::pairs_on_server(&endpoints, &devices, load.messages, &drive).await?;
            endpoints.close().await;
            Ok(vec![drive_row(shape, "microbot-server", r, "msg/s")])
        }
        Command::Fanout {
            target: t,
            size,
            messages,
            senders,
            window,
        } => {
            let (target, _server) = target(&t).await?;
            let endpoints = Arc::new(Endpoints::new(&target, CLIENT_ENDPOINTS)?);
            let devices = provision(&endpoints, &run_prefix(), size, SETUP_CONCURRENCY).await?;
            let drive = DriveConfig {
                window,
                ..DriveConfig::default()
            };
            let r =
                suite::fanout_on_server(&endpoints, &devices, messages, senders, &drive).await?;
            endpoints.close().await;
            Ok(vec![drive_row(
                format!("(b) group of {size}, {messages} msgs"),
                "microbot-server",
                r,
                "deliveries/s",
            )])
        }
        Command::Idle {
            target: t,
            connections,
            server_pid,
        } => {
            let (target, server) = target(&t).await?;
            let pid = server_pid.or_else(|| server.as_ref().map(|s| s.child.pid()));
            let endpoints = Arc::new(Endpoints::new(&target, CLIENT_ENDPOINTS)?);
            let devices =
                provision(&endpoints, &run_prefix(), connections, SETUP_CONCURRENCY).await?;
            let r = idle::run(
                &endpoints,
                &devices,
                connections,
                SETUP_CONCURRENCY * 2,
                pid,
                Duration::from_secs(3),
            )
            .await?;
            endpoints.close().await;
            #[allow(clippy::cast_precision_loss)]
            Ok(vec![Row {
                workload: format!("(c) {connections} idle connections"),
                target: "microbot-server".into(),
                value: r.per_connection().map_or_else(
                    || "RSS unknown (no pid)".to_owned(),
                    |b| format!("{:.1} KiB/conn", b as f64 / 1024.0),
                ),
                latency: None,
                note: format!(
                    "RSS before {:.0} MiB, after {:.0} MiB; set-up {:.1} s",
                    r.rss_before.unwrap_or(0) as f64 / 1048576.0,
                    r.rss_after.unwrap_or(0) as f64 / 1048576.0,
                    r.setup.as_secs_f64()
                ),
            }])
        }
        Command::Logins {
            target: t,
            total,
            concurrency,
            devices,
        } => {
            let (target, server) = target(&t).await?;
            let endpoints = Arc::new(Endpoints::new(&target, CLIENT_ENDPOINTS)?);
            let creds =
                provision(&endpoints, &run_prefix(), devices.max(1), SETUP_CONCURRENCY).await?;
            // The server's CPU is known only when this tool started it.
            let meter = CpuMeter::start(server.as_ref().map(|s| s.child.pid()));
            let mut r = logins::run(&endpoints, &creds, total, concurrency).await?;
            let cpu = meter.finish_active(r.elapsed).per_unit(r.logins);
            endpoints.close().await;
            Ok(vec![Row {
                workload: format!("(d) {total} handshakes + logins, {concurrency} in flight"),
                target: "microbot-server".into(),
                value: format!("{:.0} logins/s", r.rate()),
                latency: r.latency.summary(),
                note: suite::login_note(&r, &cpu),
            }])
        }
        Command::Relay {
            load,
            group,
            senders,
            relay,
            fingerprint,
        } => {
            let (target, local) = match (relay, fingerprint) {
                (Some(addr), Some(fingerprint)) => (Target { addr, fingerprint }, None),
                _ => {
                    let relay = Relay::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
                    let target = relay.target().clone();
                    let closer = relay.closer();
                    tokio::spawn(relay.run());
                    (target, Some(closer))
                }
            };
            let row = match group {
                Some(size) => {
                    let (r, cpu) = suite::fanout_on_relay(
                        &target,
                        None,
                        size,
                        load.messages,
                        senders,
                        &load.drive(),
                    )
                    .await?;
                    let mut row = drive_row(
                        format!("(b) group of {size}, {} msgs", load.messages),
                        "plain quinn relay",
                        r,
                        "deliveries/s",
                    );
                    // A relay in this process is counted in the loadgen's CPU.
                    let cpu_note = if local.is_some() {
                        format!(
                            "CPU µs/delivery, relay and loadgen in this one process: {:.0}",
                            cpu.loadgen_us
                        )
                    } else {
                        cpu.describe_as("delivery", "relay")
                    };
                    row.note = format!("{}; {cpu_note}", row.note);
                    row
                }
                None => drive_row(
                    format!("(a) {} devices × {} msgs", load.devices, load.messages),
                    "plain quinn relay",
                    suite::pairs_on_relay(&target, load.devices, load.messages, &load.drive())
                        .await?,
                    "msg/s",
                ),
            };
            if let Some(closer) = local {
                closer.close(0u32.into(), b"done");
            }
            Ok(vec![row])
        }
        Command::RelayServe { listen } => {
            let relay = Relay::bind(listen)?;
            println!("relay listening on {}", relay.target().addr);
            println!(
                "certificate SHA-256 fingerprint: {}",
                relay.target().fingerprint
            );
            relay.run().await;
            Ok(Vec::new())
        }
        Command::Mqtt { load, broker } => {
            if !amqp::BUILT {
                // Refuse before starting a broker this build cannot talk to.
                return Err(LoadError::AmqpNotBuilt);
            }
            let (addr, _broker) = match broker {
                Some(addr) => (addr, None),
                None => {
                    let b = procs::spawn_mosquitto(None).await?;
                    (b.addr, Some(b))
                }
            };
            let r = mqtt::run_pairs(addr, load.devices, load.messages, &load.drive()).await?;
            Ok(vec![drive_row(
                format!("(a) {} devices × {} msgs", load.devices, load.messages),
                "mosquitto QoS 1",
                r,
                "msg/s",
            )])
        }
        Command::Amqp {
            load,
            broker,
            rabbitmq_bin,
        } => {
            let (addr, _broker) = match broker {
                Some(addr) => (addr, None),
                None => {
                    let b = procs::spawn_rabbitmq(rabbitmq_bin.as_deref()).await?;
                    (b.addr, Some(b))
                }
            };
            let r = amqp::run_pairs(addr, load.devices, load.messages, &load.drive()).await?;
            Ok(vec![drive_row(
                format!("(a) {} devices × {} msgs", load.devices, load.messages),
                "RabbitMQ quorum queues + confirms",
                r,
                "msg/s",
            )])
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(rows) => {
            if !rows.is_empty() {
                println!("{}", table(&rows));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
