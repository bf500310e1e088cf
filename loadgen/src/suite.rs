//! The whole benchmark: the relay floor, mosquitto, the durable peer
//! (RabbitMQ with quorum queues and publisher confirms), and every
//! workload against the microbot server binary, each a child process in a
//! temp dir, run one after the other and printed as one table, then the
//! targets of issue 17 judged from the same run (targets.rs).
//!
//! Also the building blocks the CLI subcommands share: provisioning and
//! logging in devices for a workload on a given target.
//!
//! Rows (a) saturation, (b) and (d) carry the CPU used meanwhile by the
//! server, this load generator and the machine, per unit of work (cpu.rs).
//!
//! Not owned here: the workloads themselves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use microbot_client::Transport;

use crate::cpu::{CpuCost, CpuMeter, available_cpus};
use crate::driver::{DriveConfig, DriveReport};
use crate::error::{LoadError, LoadResult};
use crate::idle::IdleReport;
use crate::logins::LoginsReport;
use crate::provision::{DeviceCredentials, login_all, provision, run_prefix};
use crate::stats::{Row, table};
use crate::targets::{self, Check, ServerFigures};
use crate::wire::{Endpoints, RequestChannel, Target};
use crate::{amqp, fanout, idle, logins, mqtt, pairs, procs, sdk};

/// Client endpoints (UDP sockets) per target.
pub const CLIENT_ENDPOINTS: usize = 4;
/// Connections opened at the same time while setting up.
pub const SETUP_CONCURRENCY: usize = 32;

/// Sizes of a suite run. The defaults finish in a few minutes on 2 cores.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    /// `microbot-server` binary.
    pub server_bin: PathBuf,
    /// This binary (hosts the relay as `relay-serve`).
    pub loadgen_bin: PathBuf,
    /// `mosquitto` binary; `None`: from `PATH`.
    pub mosquitto_bin: Option<PathBuf>,
    /// Skip the mosquitto peer.
    pub skip_mqtt: bool,
    /// RabbitMQ start script; `None`: [`procs::RABBITMQ_SERVER`].
    pub rabbitmq_bin: Option<PathBuf>,
    /// Skip the durable peer (RabbitMQ).
    pub skip_amqp: bool,
    /// Devices in workload (a) (even).
    pub devices: usize,
    /// Messages per device in workload (a).
    pub messages: u64,
    /// Unanswered sends per device at saturation.
    pub window: usize,
    /// Group sizes for workload (b), with the group messages sent to each.
    pub groups: Vec<(usize, u64)>,
    /// Group members that send in workload (b).
    pub group_senders: usize,
    /// Idle connections in workload (c).
    pub idle: usize,
    /// Handshakes + logins in workload (d).
    pub logins: u64,
    /// Logins in flight at once.
    pub login_concurrency: usize,
    /// SDK devices for the crypto-included run (0: skip).
    pub sdk_devices: usize,
    /// Messages per SDK device.
    pub sdk_messages: u64,
}

impl SuiteConfig {
    /// Default sizes with the given binaries.
    pub fn new(server_bin: PathBuf, loadgen_bin: PathBuf) -> Self {
        Self {
            server_bin,
            loadgen_bin,
            mosquitto_bin: None,
            skip_mqtt: false,
            rabbitmq_bin: None,
            skip_amqp: false,
            devices: 32,
            messages: 400,
            window: 8,
            groups: vec![(10, 400), (100, 100), (1000, 20)],
            group_senders: 4,
            idle: 2000,
            logins: 3000,
            login_concurrency: 32,
            sdk_devices: 4,
            sdk_messages: 100,
        }
    }
}

/// `count` fake devices (ids 1..=count) logged in to the relay, which checks nothing.
///
/// # Errors
/// Connection failures.
pub async fn relay_channels(
    endpoints: &Endpoints,
    count: usize,
) -> LoadResult<Vec<(RequestChannel, u64)>> {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let mut channels = Vec::with_capacity(count);
    for i in 0..count {
        let id = u64::try_from(i).unwrap_or(0) + 1;
        let mut channel = RequestChannel::open(endpoints).await?;
        channel.login(id, &key).await?;
        channels.push((channel, id));
    }
    Ok(channels)
}

/// `count` connections logged in to the relay at `target`, with their
/// endpoints (close them when done) and device ids.
async fn open_relay(
    target: &Target,
    count: usize,
) -> LoadResult<(Endpoints, Vec<RequestChannel>, Vec<u64>)> {
    let endpoints = Endpoints::new(target, CLIENT_ENDPOINTS)?;
    let (channels, ids) = relay_channels(&endpoints, count).await?.into_iter().unzip();
    Ok((endpoints, channels, ids))
}

/// Workload (a) on the relay at `target`.
///
/// # Errors
/// As [`pairs::run`].
pub async fn pairs_on_relay(
    target: &Target,
    devices: usize,
    messages: u64,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    let (endpoints, channels, ids) = open_relay(target, devices).await?;
    let report = pairs::run(channels, &ids, messages, config).await;
    endpoints.close().await;
    report
}

/// Workload (b) on the relay at `target`: a group of `members` fresh
/// connections (the relay's group is every connection). With the relay's
/// pid, also the CPU per delivery of the fan-out (not of the logins).
///
/// # Errors
/// As [`fanout::run`].
pub async fn fanout_on_relay(
    target: &Target,
    relay_pid: Option<u32>,
    members: usize,
    messages: u64,
    senders: usize,
    config: &DriveConfig,
) -> LoadResult<(DriveReport, CpuCost)> {
    let (endpoints, mut channels, ids) = open_relay(target, members).await?;
    let names: Vec<String> = ids.iter().map(|id| format!("relay-{id}")).collect();
    let group = fanout::create_group(&mut channels, &names).await?;
    let meter = CpuMeter::start(relay_pid);
    let report = fanout::send(channels, group, messages, senders, config).await;
    let used = match &report {
        Ok(r) => meter.finish_active(r.elapsed),
        Err(_) => meter.finish(),
    };
    endpoints.close().await;
    let report = report?;
    let cost = used.per_unit(report.delivered);
    Ok((report, cost))
}

/// Workload (a) on a microbot server with already provisioned devices.
///
/// # Errors
/// As [`pairs::run`].
pub async fn pairs_on_server(
    endpoints: &Arc<Endpoints>,
    devices: &[DeviceCredentials],
    messages: u64,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    let channels = login_all(endpoints, devices, SETUP_CONCURRENCY).await?;
    let ids: Vec<u64> = devices.iter().map(|d| d.device_id).collect();
    pairs::run(channels, &ids, messages, config).await
}

/// Workload (b) on a microbot server: a group of `devices` (all logged in).
///
/// # Errors
/// As [`fanout::run`].
pub async fn fanout_on_server(
    endpoints: &Arc<Endpoints>,
    devices: &[DeviceCredentials],
    messages: u64,
    senders: usize,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    let channels = login_all(endpoints, devices, SETUP_CONCURRENCY).await?;
    let names: Vec<String> = devices.iter().map(|d| d.username.clone()).collect();
    fanout::run(channels, &names, messages, senders, config).await
}

/// The row of a run at the `offered` half-load rate on `target`, and its
/// p99 when every message arrived (a figure for the targets).
fn half_load_row(
    report: &mut DriveReport,
    offered: f64,
    target: &str,
    note: String,
) -> (Row, Option<Duration>) {
    let latency = report.latency.summary();
    let p99 = latency.filter(|_| report.complete()).map(|s| s.p99);
    let row = Row {
        workload: format!("(a) offered {offered:.0} msg/s (½ of saturation)"),
        target: target.into(),
        value: rate(report.delivered_rate(), "msg/s"),
        latency,
        note,
    };
    (row, p99)
}

fn rate(value: f64, unit: &str) -> String {
    format!("{value:.0} {unit}")
}

fn pct(a: f64, b: f64) -> f64 {
    if b > 0.0 { 100.0 * a / b } else { 0.0 }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// `report`'s delivered rate, if nothing was lost (a target is judged on
/// complete runs only).
fn complete_rate(report: &DriveReport) -> Option<f64> {
    report.complete().then(|| report.delivered_rate())
}

fn incomplete(report: &DriveReport) -> String {
    if report.complete() {
        String::new()
    } else {
        format!(
            "; INCOMPLETE: {} of {} delivered, {} refused",
            report.delivered, report.expected, report.send_errors
        )
    }
}

/// The note of a (d) row: the CPU per login, then the failures if any.
pub fn login_note(report: &LoginsReport, cpu: &CpuCost) -> String {
    let mut note = cpu.describe("login");
    if let Some(e) = &report.first_error {
        note.push_str(&format!("; {} failed: {e}", report.failures));
    }
    note
}

fn log(line: &str) {
    eprintln!("[suite] {line}");
}

/// What the suite measured: the table rows and the key figures.
#[derive(Clone, Debug, Default)]
pub struct SuiteReport {
    /// The table.
    pub rows: Vec<Row>,
    /// The figures the targets are judged on.
    pub figures: ServerFigures,
}

impl SuiteReport {
    /// The targets of issue 17, judged on this run's figures.
    pub fn checks(&self) -> Vec<Check> {
        targets::server_checks(&self.figures)
    }

    /// The Markdown table with a line on the conditions, then the targets.
    pub fn render(&self) -> String {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        format!(
            "{}\nconditions: {cpus} CPUs, load average at the end: {}\n\n{}",
            table(&self.rows),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            targets::render(
                "targets (issue 17), from this run's figures:",
                &self.checks()
            )
        )
    }
}

/// Runs everything; rows are appended as results come in.
///
/// # Errors
/// The first workload that cannot run at all (a workload that runs but
/// loses messages is reported in its row instead).
pub async fn run(config: &SuiteConfig) -> LoadResult<SuiteReport> {
    let mut out = SuiteReport {
        figures: ServerFigures {
            cpus: available_cpus(),
            ..ServerFigures::default()
        },
        ..SuiteReport::default()
    };
    let drive = DriveConfig {
        window: config.window,
        ..DriveConfig::default()
    };
    let shape = format!(
        "(a) {} devices in pairs × {} msgs, 256 B",
        config.devices, config.messages
    );

    // The floor.
    log("relay floor");
    let relay = procs::spawn_relay(&config.loadgen_bin).await?;
    let floor = pairs_on_relay(&relay.target, config.devices, config.messages, &drive).await?;
    out.figures.relay_rate = complete_rate(&floor);
    let mut floor_latency = floor.latency.clone();
    out.rows.push(Row {
        workload: format!("{shape}, saturation"),
        target: "plain quinn relay (floor)".into(),
        value: rate(floor.delivered_rate(), "msg/s"),
        latency: floor_latency.summary(),
        note: format!("no storage, no auth{}", incomplete(&floor)),
    });
    // The big group's floor: the same burst through the relay.
    if let Some(&(size, messages)) = config
        .groups
        .iter()
        .find(|(size, _)| *size == targets::BIG_GROUP)
    {
        log(&format!("relay floor, fan-out to {size}"));
        let (mut r, cpu) = fanout_on_relay(
            &relay.target,
            Some(relay.child.pid()),
            size,
            messages,
            config.group_senders,
            &drive,
        )
        .await?;
        let latency = r.latency.summary();
        if r.complete() {
            out.figures.big_group_floor_p50 = latency.map(|s| s.p50);
        }
        out.rows.push(Row {
            workload: format!(
                "(b) group of {size}, {messages} msgs from {} senders",
                config.group_senders.min(size)
            ),
            target: "plain quinn relay (floor)".into(),
            value: rate(r.delivered_rate(), "deliveries/s"),
            latency,
            note: format!(
                "no storage, no auth; {}{}",
                cpu.describe_as("delivery", "relay"),
                incomplete(&r)
            ),
        });
    }
    drop(relay);

    // The peer.
    let mut mqtt_rate = None;
    if !config.skip_mqtt {
        log("mosquitto peer");
        let broker = procs::spawn_mosquitto(config.mosquitto_bin.as_deref()).await?;
        let mut peer =
            mqtt::run_pairs(broker.addr, config.devices, config.messages, &drive).await?;
        mqtt_rate = Some(peer.delivered_rate());
        out.figures.mosquitto_rate = complete_rate(&peer);
        out.rows.push(Row {
            workload: format!("{shape}, saturation"),
            target: "mosquitto 2, QoS 1, persistence on".into(),
            value: rate(peer.delivered_rate(), "msg/s"),
            latency: peer.latency.summary(),
            note: format!(
                "{:.0}% of floor; PUBACK before disk (autosave){}",
                pct(peer.delivered_rate(), floor.delivered_rate()),
                incomplete(&peer)
            ),
        });
        let half = DriveConfig {
            rate: Some(peer.delivered_rate() / 2.0),
            ..drive.clone()
        };
        let mut peer_half =
            mqtt::run_pairs(broker.addr, config.devices, config.messages / 2, &half).await?;
        out.rows.push(Row {
            workload: format!(
                "(a) offered {:.0} msg/s (½ of its saturation)",
                peer.delivered_rate() / 2.0
            ),
            target: "mosquitto 2, QoS 1, persistence on".into(),
            value: rate(peer_half.delivered_rate(), "msg/s"),
            latency: peer_half.latency.summary(),
            note: incomplete(&peer_half).trim_start_matches("; ").to_owned(),
        });
    }

    // The durable peer.
    let mut durable_rate = None;
    let rabbitmq = procs::rabbitmq_server(config.rabbitmq_bin.as_deref());
    match (config.skip_amqp, rabbitmq) {
        (true, _) => log("durable peer skipped (--no-amqp)"),
        (false, _) if !amqp::BUILT => {
            log(&format!(
                "durable peer SKIPPED: {}",
                LoadError::AmqpNotBuilt
            ));
            out.rows.push(Row {
                workload: format!("{shape}, saturation"),
                target: "RabbitMQ, quorum queues + publisher confirms".into(),
                value: "skipped".into(),
                latency: None,
                note: "load generator built without the amqp feature".into(),
            });
        }
        (false, None) => {
            log(&format!(
                "durable peer SKIPPED: {} not found; apt-get install rabbitmq-server \
                 (scripts/bench-server.sh installs it), or --no-amqp",
                config
                    .rabbitmq_bin
                    .as_deref()
                    .map_or(procs::RABBITMQ_SERVER.into(), |b| b.display().to_string())
            ));
            out.rows.push(Row {
                workload: format!("{shape}, saturation"),
                target: "RabbitMQ, quorum queues + publisher confirms".into(),
                value: "skipped".into(),
                latency: None,
                note: "rabbitmq-server not installed".into(),
            });
        }
        (false, Some(bin)) => {
            log("durable peer: RabbitMQ quorum queues + publisher confirms");
            let broker = procs::spawn_rabbitmq(Some(&bin)).await?;
            let mut peer =
                amqp::run_pairs(broker.addr, config.devices, config.messages, &drive).await?;
            drop(broker);
            durable_rate = Some(peer.delivered_rate());
            out.figures.durable_rate = complete_rate(&peer);
            out.rows.push(Row {
                workload: format!("{shape}, saturation"),
                target: format!(
                    "RabbitMQ {}, quorum queues + publisher confirms",
                    procs::rabbitmq_version().unwrap_or_default()
                ),
                value: rate(peer.delivered_rate(), "msg/s"),
                latency: peer.latency.summary(),
                note: format!(
                    "{:.0}% of floor; confirm after the Raft log is fsynced{}",
                    pct(peer.delivered_rate(), floor.delivered_rate()),
                    incomplete(&peer)
                ),
            });
        }
    }

    // The server.
    log("starting microbot-server");
    let server = procs::spawn_server(&config.server_bin).await?;
    let endpoints = Arc::new(Endpoints::new(&server.target, CLIENT_ENDPOINTS)?);
    let max_group = config.groups.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let needed = config
        .devices
        .max(max_group)
        .max(config.idle.min(1000))
        .max(1);
    log(&format!("provisioning {needed} accounts"));
    let started = std::time::Instant::now();
    let devices = provision(&endpoints, &run_prefix(), needed, SETUP_CONCURRENCY).await?;
    log(&format!(
        "provisioned in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let pair_devices = devices
        .get(..config.devices)
        .ok_or(LoadError::Invalid("too few devices"))?;

    log("(a) saturation");
    let server_pid = Some(server.child.pid());
    let channels = login_all(&endpoints, pair_devices, SETUP_CONCURRENCY).await?;
    let ids: Vec<u64> = pair_devices.iter().map(|d| d.device_id).collect();
    let meter = CpuMeter::start(server_pid);
    let mut sat = pairs::run(channels, &ids, config.messages, &drive).await?;
    let sat_cpu = meter.finish_active(sat.elapsed).per_unit(sat.delivered);
    if sat.complete() {
        out.figures.server_cpu = Some(sat_cpu);
    }
    let sat_rate = sat.delivered_rate();
    out.figures.server_rate = complete_rate(&sat);
    let of_floor = pct(sat_rate, floor.delivered_rate());
    let mut note = format!("{of_floor:.0}% of floor");
    for (name, peer) in [("mosquitto", mqtt_rate), ("RabbitMQ", durable_rate)] {
        if let Some(m) = peer {
            note.push_str(&format!(
                "; {:.2}× {name}",
                if m > 0.0 { sat_rate / m } else { 0.0 }
            ));
        }
    }
    note.push_str(&format!("; {}", sat_cpu.describe("msg")));
    note.push_str(&incomplete(&sat));
    out.rows.push(Row {
        workload: format!("{shape}, saturation"),
        target: "microbot-server (durable queues)".into(),
        value: rate(sat_rate, "msg/s"),
        latency: sat.latency.summary(),
        note,
    });

    log("(a) half of saturation");
    let half = DriveConfig {
        rate: Some(sat_rate / 2.0),
        ..drive.clone()
    };
    let mut at_half = pairs_on_server(&endpoints, pair_devices, config.messages / 2, &half).await?;
    let note = incomplete(&at_half).trim_start_matches("; ").to_owned();
    let (row, p99) = half_load_row(
        &mut at_half,
        sat_rate / 2.0,
        "microbot-server (durable queues)",
        note,
    );
    out.figures.half_load_p99 = p99;
    out.rows.push(row);
    // The same offered load through the relay: the tail this machine
    // gives a QUIC exchange at that rate with no storage at all.
    log("(a) half of saturation, relay floor");
    let relay = procs::spawn_relay(&config.loadgen_bin).await?;
    let mut floor_half =
        pairs_on_relay(&relay.target, config.devices, config.messages / 2, &half).await?;
    drop(relay);
    let note = format!("no storage, no auth{}", incomplete(&floor_half));
    let (row, floor_p99) = half_load_row(
        &mut floor_half,
        sat_rate / 2.0,
        "plain quinn relay (floor)",
        note,
    );
    out.figures.half_load_floor_p99 = floor_p99;
    out.rows.push(row);

    for (size, messages) in &config.groups {
        let Some(members) = devices.get(..*size) else {
            continue;
        };
        log(&format!("(b) fan-out to {size}"));
        let mut channels = login_all(&endpoints, members, SETUP_CONCURRENCY).await?;
        let names: Vec<String> = members.iter().map(|d| d.username.clone()).collect();
        // Counted from the first message (the group exists, every member
        // has its announcement) to the last delivery, as on the relay.
        let group = fanout::create_group(&mut channels, &names).await?;
        let meter = CpuMeter::start(server_pid);
        let mut r = fanout::send(channels, group, *messages, config.group_senders, &drive).await?;
        let cpu = meter.finish_active(r.elapsed).per_unit(r.delivered);
        let latency = r.latency.summary();
        if *size == targets::BIG_GROUP && r.complete() {
            out.figures.big_group_p50 = latency.map(|s| s.p50);
        }
        out.rows.push(Row {
            workload: format!(
                "(b) group of {size}, {messages} msgs from {} senders",
                config.group_senders.min(*size)
            ),
            target: "microbot-server".into(),
            value: rate(r.delivered_rate(), "deliveries/s"),
            latency,
            note: format!(
                "{:.0} group msgs/s; {}{}",
                r.send_rate(),
                cpu.describe("delivery"),
                incomplete(&r)
            ),
        });
    }

    // A fresh server for (c): the earlier workloads grew the first one's
    // heap, which would hide what the idle connections cost.
    log(&format!(
        "(c) {} idle connections on a fresh server",
        config.idle
    ));
    let idle_server = procs::spawn_server(&config.server_bin).await?;
    let idle_endpoints = Arc::new(Endpoints::new(&idle_server.target, CLIENT_ENDPOINTS)?);
    let idle_devices = provision(
        &idle_endpoints,
        &run_prefix(),
        config.idle.max(1),
        SETUP_CONCURRENCY,
    )
    .await?;
    let idle_report: IdleReport = idle::run(
        &idle_endpoints,
        &idle_devices,
        config.idle,
        SETUP_CONCURRENCY * 2,
        Some(idle_server.child.pid()),
        Duration::from_secs(3),
    )
    .await?;
    idle_endpoints.close().await;
    drop(idle_server);
    let total = idle_report.rss_after.unwrap_or(0);
    let per = idle_report.per_connection().unwrap_or(0);
    // Extrapolated to the 10 000-connection target.
    #[allow(clippy::cast_precision_loss)]
    let at_10k = idle_report.rss_before.unwrap_or(0) as f64 + per as f64 * 10_000.0;
    #[allow(clippy::cast_precision_loss)]
    out.rows.push(Row {
        workload: format!("(c) {} idle logged-in connections", config.idle),
        target: "microbot-server".into(),
        value: format!("{:.1} KiB/conn", per as f64 / 1024.0),
        latency: None,
        note: format!(
            "server RSS {:.0} MiB; 10 000 conns ≈ {:.0} MiB (target < 1 GiB: {})",
            total as f64 / 1048576.0,
            at_10k / 1048576.0,
            verdict(at_10k < 1024.0 * 1048576.0)
        ),
    });

    log("(d) handshakes + logins");
    let login_devices = devices.get(..devices.len().min(200)).unwrap_or(&devices);
    let meter = CpuMeter::start(server_pid);
    let mut l: LoginsReport = logins::run(
        &endpoints,
        login_devices,
        config.logins,
        config.login_concurrency,
    )
    .await?;
    let login_cpu = meter.finish_active(l.elapsed).per_unit(l.logins);
    let login_rate = l.rate();
    if l.first_error.is_none() {
        out.figures.logins_rate = Some(login_rate);
        out.figures.logins_cpu = Some(login_cpu);
    }
    out.rows.push(Row {
        workload: format!(
            "(d) {} handshakes + logins, {} in flight",
            config.logins, config.login_concurrency
        ),
        target: "microbot-server".into(),
        value: rate(login_rate, "logins/s"),
        latency: l.latency.summary(),
        note: login_note(&l, &login_cpu),
    });

    if config.sdk_devices > 0 {
        // The same SDK workload over each transport (SPEC.md §12.13), so
        // the WebSocket path stands next to QUIC in one run.
        for (transport, label) in [
            (Transport::Quic, "QUIC"),
            (Transport::WebSocket, "WebSocket"),
        ] {
            log(&format!(
                "(a) through the SDK over {label}, crypto included"
            ));
            let mut r = sdk::run_pairs(
                &server.target,
                transport,
                config.sdk_devices,
                config.sdk_messages,
                &drive,
            )
            .await?;
            out.rows.push(Row {
                workload: format!(
                    "(a) SDK over {label}: {} devices × {} texts of 256 chars, saturation",
                    config.sdk_devices, config.sdk_messages
                ),
                target: "microbot-server via microbot-client".into(),
                value: rate(r.delivered_rate(), "msg/s"),
                latency: r.latency.summary(),
                note: format!(
                    "crypto and client stores on both ends included{}",
                    incomplete(&r)
                ),
            });
        }
    }
    endpoints.close().await;
    drop(server);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_note_gives_the_cpu_then_the_failures() {
        let cpu = CpuCost {
            server_us: Some(1040.0),
            loadgen_us: 760.0,
            machine_busy: 1.0,
        };
        let mut report = LoginsReport::default();
        assert_eq!(
            login_note(&report, &cpu),
            "CPU µs/login: server 1040, loadgen 760; machine 100% busy"
        );
        report.failures = 2;
        report.first_error = Some("timed out".into());
        assert_eq!(
            login_note(&report, &cpu),
            "CPU µs/login: server 1040, loadgen 760; machine 100% busy; 2 failed: timed out"
        );
    }
}
