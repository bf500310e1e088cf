//! Workload (a) on a cluster (issue 9, SPEC.md §18.6): for each node count
//! in turn, that many `microbot-server` processes share a fresh PostgreSQL
//! schema, a fresh Redis namespace, one attachments directory and one
//! certificate; devices are provisioned through the first node, then
//! device `i` logs in to node `i % n`, so partners sit on different nodes
//! and every message crosses the Redis bus. One node on the embedded
//! SQLite runs the same workload beside them, for comparison.
//!
//! Each run also accounts for where the CPU went (from `/proc`): the
//! nodes, every `postgres` and `redis-server` process, this load
//! generator, and how busy the whole machine was; and, on the shared
//! backends, what it left in PostgreSQL and Redis (footprint.rs). With
//! nginx given, the largest node count runs once more behind it
//! (balancer.rs), every client through one address.
//!
//! The output ends with the cluster targets of issue 17 (targets.rs),
//! judged from the same run: one PostgreSQL + Redis node against the
//! embedded store measured minutes before it, and that node's CPU plus
//! every PostgreSQL and Redis process's per delivered message.
//!
//! Not owned here: the workload (pairs.rs, driver.rs), the child processes
//! (procs.rs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::balancer::Balancer;
use crate::cpu::{MachineJiffies, per_unit_us};
use crate::driver::{DriveConfig, DriveReport};
use crate::error::{LoadError, LoadResult};
use crate::footprint::{self, Footprint};
use crate::pairs;
use crate::procs::{self, NodeSpec, QuicProcess, cpu_time, cpu_times_named};
use crate::provision::{SDK_ONE_TIME_PREKEYS, login_spread, provision, run_prefix, upload_prekeys};
use crate::stats::{Row, table};
use crate::targets::{self, Check, ClusterFigures};
use crate::wire::Endpoints;

/// Client endpoints (UDP sockets) per node.
const ENDPOINTS_PER_NODE: usize = 4;
/// Connections opened at the same time while provisioning.
const SETUP_CONCURRENCY: usize = 32;

/// What a cluster benchmark runs.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `microbot-server` binary.
    pub server_bin: PathBuf,
    /// `postgres://…` URL of a database the nodes may create a schema in.
    pub postgres_url: String,
    /// `redis://…` URL.
    pub redis_url: String,
    /// `redis+cluster://…` URL of a Redis Cluster: also run the largest
    /// node count on it (one more row).
    pub redis_cluster_url: Option<String>,
    /// Node counts, each run in turn on a fresh schema and namespace.
    pub node_counts: Vec<usize>,
    /// Also run one node on the embedded SQLite (the comparison row).
    pub sqlite_baseline: bool,
    /// Devices in pairs (even).
    pub devices: usize,
    /// Messages per device.
    pub messages: u64,
    /// The saturation run's parameters (its `rate` is ignored).
    pub drive: DriveConfig,
    /// Also run at this offered load (messages/s over all devices).
    pub rate: Option<f64>,
    /// PostgreSQL connections per node; `None`: the server's default.
    pub pool_size: Option<u32>,
    /// nginx binary (Debian's, with `libnginx-mod-stream`): also run the
    /// largest node count behind it, every client through one address
    /// (one more row).
    pub nginx_bin: Option<PathBuf>,
}

impl ClusterConfig {
    /// Default sizes (1, 2 and 3 nodes, 32 devices × 1000 messages, window
    /// 8) with the given binary and engines.
    pub fn new(server_bin: PathBuf, postgres_url: String, redis_url: String) -> Self {
        Self {
            server_bin,
            postgres_url,
            redis_url,
            redis_cluster_url: None,
            node_counts: vec![1, 2, 3],
            sqlite_baseline: true,
            devices: 32,
            messages: 1000,
            drive: DriveConfig {
                window: 8,
                ..DriveConfig::default()
            },
            rate: None,
            pool_size: None,
            nginx_bin: None,
        }
    }
}

/// Where the nodes keep their state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One node, its embedded SQLite file (the default deployment).
    Sqlite,
    /// Shared PostgreSQL and Redis (SPEC.md §18.6).
    Shared,
    /// Shared PostgreSQL and a Redis Cluster (`redis_cluster_url`).
    SharedCluster,
    /// Shared PostgreSQL and Redis, the clients through nginx
    /// (`nginx_bin`; QUIC by a consistent hash of the client address).
    SharedBalanced,
}

/// CPU time spent during one run, by whom.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSplit {
    /// The server nodes together.
    pub nodes: Duration,
    /// Every `postgres` process (backends, WAL writer, checkpointer, …).
    pub postgres: Duration,
    /// Every `redis-server` process.
    pub redis: Duration,
    /// This load generator.
    pub loadgen: Duration,
    /// Wall time of the run.
    pub wall: Duration,
    /// Share of all CPUs busy over the run (0–1), whoever used them.
    pub machine_busy: f64,
    /// Share of all CPUs idle waiting for I/O (0–1).
    pub machine_iowait: f64,
}

impl CpuSplit {
    /// Microseconds of the nodes, PostgreSQL and Redis together (not the
    /// load generator) per delivered message.
    pub fn serving_per_message(&self, delivered: u64) -> f64 {
        Self::per_message(self.nodes + self.postgres + self.redis, delivered)
    }

    /// Microseconds of `cpu` per delivered message.
    fn per_message(cpu: Duration, delivered: u64) -> f64 {
        per_unit_us(cpu, delivered)
    }

    /// "CPU µs/msg: nodes …, postgres …, redis …, loadgen …; machine …% busy".
    pub fn describe(&self, delivered: u64) -> String {
        format!(
            "CPU µs/msg: nodes {:.0}, postgres {:.0}, redis {:.0}, loadgen {:.0}; \
             machine {:.0}% busy, {:.0}% iowait",
            Self::per_message(self.nodes, delivered),
            Self::per_message(self.postgres, delivered),
            Self::per_message(self.redis, delivered),
            Self::per_message(self.loadgen, delivered),
            self.machine_busy * 100.0,
            self.machine_iowait * 100.0,
        )
    }
}

/// CPU counters at the start of a run.
struct CpuSampler {
    nodes: Vec<u32>,
    node_start: Duration,
    postgres: HashMap<u32, Duration>,
    redis: HashMap<u32, Duration>,
    loadgen: Duration,
    machine: Option<MachineJiffies>,
    started: Instant,
}

/// CPU used since `start` by the processes in `now` (new ones count from zero).
fn grown(start: &HashMap<u32, Duration>, now: &HashMap<u32, Duration>) -> Duration {
    now.iter()
        .map(|(pid, t)| t.saturating_sub(start.get(pid).copied().unwrap_or_default()))
        .sum()
}

impl CpuSampler {
    fn start(nodes: Vec<u32>) -> Self {
        let node_start = nodes.iter().filter_map(|p| cpu_time(*p)).sum();
        Self {
            nodes,
            node_start,
            postgres: cpu_times_named("postgres"),
            redis: cpu_times_named("redis-server"),
            loadgen: cpu_time(std::process::id()).unwrap_or_default(),
            machine: MachineJiffies::now(),
            started: Instant::now(),
        }
    }

    fn finish(self) -> CpuSplit {
        let nodes: Duration = self.nodes.iter().filter_map(|p| cpu_time(*p)).sum();
        let (machine_busy, machine_iowait) = match (self.machine, MachineJiffies::now()) {
            (Some(start), Some(end)) => start.shares_until(&end),
            _ => (0.0, 0.0),
        };
        CpuSplit {
            nodes: nodes.saturating_sub(self.node_start),
            postgres: grown(&self.postgres, &cpu_times_named("postgres")),
            redis: grown(&self.redis, &cpu_times_named("redis-server")),
            loadgen: cpu_time(std::process::id())
                .unwrap_or_default()
                .saturating_sub(self.loadgen),
            wall: self.started.elapsed(),
            machine_busy,
            machine_iowait,
        }
    }
}

/// One measured run.
#[derive(Clone, Debug)]
pub struct ClusterRun {
    /// Where the state was.
    pub backend: Backend,
    /// Server nodes.
    pub nodes: usize,
    /// Offered load; `None`: saturation.
    pub offered: Option<f64>,
    /// What the workload measured.
    pub report: DriveReport,
    /// Where the CPU went meanwhile.
    pub cpu: CpuSplit,
    /// What the run left in PostgreSQL and Redis (shared backends).
    pub footprint: Footprint,
}

impl ClusterRun {
    /// "1 node, SQLite" / "3 nodes, PostgreSQL + Redis".
    pub fn label(&self) -> String {
        let nodes = if self.nodes == 1 {
            "1 node".to_owned()
        } else {
            format!("{} nodes", self.nodes)
        };
        match self.backend {
            Backend::Sqlite => format!("{nodes}, SQLite"),
            Backend::Shared => format!("{nodes}, PostgreSQL + Redis"),
            Backend::SharedCluster => format!("{nodes}, PostgreSQL + Redis Cluster"),
            Backend::SharedBalanced => format!("{nodes} behind nginx, PostgreSQL + Redis"),
        }
    }
}

/// Every run of a cluster benchmark.
#[derive(Clone, Debug)]
pub struct ClusterReport {
    /// The workload's shape, for the table.
    pub shape: String,
    /// The runs in order.
    pub runs: Vec<ClusterRun>,
}

impl ClusterReport {
    /// The first complete saturation run on `backend` with `nodes` nodes.
    fn saturation(&self, backend: Backend, nodes: usize) -> Option<&ClusterRun> {
        self.runs.iter().find(|run| {
            run.backend == backend
                && run.nodes == nodes
                && run.offered.is_none()
                && run.report.complete()
        })
    }

    /// The figures the cluster targets are judged on.
    pub fn figures(&self) -> ClusterFigures {
        let shared = self.saturation(Backend::Shared, 1);
        ClusterFigures {
            embedded_rate: self
                .saturation(Backend::Sqlite, 1)
                .map(|run| run.report.delivered_rate()),
            shared_rate: shared.map(|run| run.report.delivered_rate()),
            shared_cpu_us: shared.map(|run| run.cpu.serving_per_message(run.report.delivered)),
        }
    }

    /// The cluster targets of issue 17, judged on this run's figures.
    pub fn checks(&self) -> Vec<Check> {
        targets::cluster_checks(&self.figures())
    }

    /// One table row per run.
    pub fn rows(&self) -> Vec<Row> {
        self.runs
            .iter()
            .map(|run| {
                let r = &run.report;
                let delivered = r.delivery_note();
                Row {
                    workload: match run.offered {
                        None => format!("{}, saturation", self.shape),
                        Some(rate) => format!("{}, offered {rate:.0} msg/s", self.shape),
                    },
                    target: run.label(),
                    value: format!("{:.0} msg/s", r.delivered_rate()),
                    latency: r.latency.clone().summary(),
                    note: [
                        format!(
                            "{delivered}, sends answered by {:.1} s, last delivery at {:.1} s; {}",
                            r.answered.as_secs_f64(),
                            r.elapsed.as_secs_f64(),
                            run.cpu.describe(r.delivered)
                        ),
                        run.footprint.describe(),
                    ]
                    .into_iter()
                    .filter(|part| !part.is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
                }
            })
            .collect()
    }

    /// The Markdown table with a line on the conditions.
    pub fn render(&self) -> String {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        format!(
            "{}\nconditions: {cpus} CPUs shared by every node, PostgreSQL, Redis and the \
             load generator; load average at the end: {}\n\n{}\n(PostgreSQL and Redis \
             CPU: every `postgres` and `redis-server` process on the machine, from /proc)",
            table(&self.rows()),
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

fn log(line: &str) {
    eprintln!("[cluster] {line}");
}

/// Runs `sql` on `url` with `psql`.
fn psql(url: &str, sql: &str) -> LoadResult<()> {
    footprint::psql(url, sql).map(drop)
}

/// A fresh PostgreSQL schema, dropped (with its tables) on drop.
struct Schema {
    admin_url: String,
    name: String,
    /// A URL whose connections use the schema.
    url: String,
}

impl Schema {
    fn create(admin_url: &str, name: String) -> LoadResult<Self> {
        psql(admin_url, &format!("CREATE SCHEMA {name}"))?;
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        Ok(Self {
            url: format!("{admin_url}{sep}options=-c%20search_path%3D{name}"),
            admin_url: admin_url.to_owned(),
            name,
        })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin_url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        ) {
            log(&format!("could not drop schema {}: {e}", self.name));
        }
    }
}

/// Writes one self-signed certificate for every node (clients pin it).
fn write_certificate(dir: &Path) -> LoadResult<(PathBuf, PathBuf)> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(|e| LoadError::Config(format!("certificate: {e}")))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&key, certified.signing_key.serialize_pem())
        .map_err(LoadError::io("writing the cluster key"))?;
    std::fs::write(&cert, certified.cert.pem())
        .map_err(LoadError::io("writing the cluster certificate"))?;
    Ok((cert, key))
}

/// Running nodes; fields drop in order: nodes, then their schema and files.
struct Nodes {
    nodes: Vec<QuicProcess>,
    schema: Option<Schema>,
    /// The Redis namespace of a shared cluster.
    namespace: Option<String>,
    _shared: Option<tempfile::TempDir>,
}

impl Nodes {
    async fn sqlite(server_bin: &Path) -> LoadResult<Self> {
        Ok(Self {
            nodes: vec![procs::spawn_server(server_bin).await?],
            schema: None,
            namespace: None,
            _shared: None,
        })
    }

    async fn shared(config: &ClusterConfig, redis_url: &str, count: usize) -> LoadResult<Self> {
        let tag = run_prefix();
        let shared = tempfile::tempdir().map_err(LoadError::io("creating the cluster dir"))?;
        let (cert_pem, key_pem) = write_certificate(shared.path())?;
        let attachments_dir = shared.path().join("attachments");
        std::fs::create_dir(&attachments_dir)
            .map_err(LoadError::io("creating the attachments dir"))?;
        let schema = Schema::create(&config.postgres_url, format!("{tag}_{count}nodes"))?;
        let namespace = format!("{tag}-{count}nodes");
        log(&format!(
            "{count} node(s) on schema {} and Redis namespace {namespace}",
            schema.name
        ));
        let spec_namespace = namespace.clone();
        let spec = NodeSpec {
            storage_url: schema.url.clone(),
            redis_url: redis_url.to_owned(),
            namespace,
            attachments_dir,
            cert_pem,
            key_pem,
            pool_size: config.pool_size,
        };
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            // One at a time: the first migrates the fresh schema.
            nodes.push(procs::spawn_node(&config.server_bin, &spec).await?);
        }
        if let Some(first) = nodes.first()
            && nodes
                .iter()
                .any(|n| n.target.fingerprint != first.target.fingerprint)
        {
            return Err(LoadError::Process {
                name: "microbot-server".to_owned(),
                reason: "cluster nodes present different certificates".to_owned(),
            });
        }
        Ok(Self {
            nodes,
            schema: Some(schema),
            namespace: Some(spec_namespace),
            _shared: Some(shared),
        })
    }
}

/// Runs workload (a) on one configuration: saturation, then the offered
/// rate if set.
async fn measure(
    config: &ClusterConfig,
    backend: Backend,
    count: usize,
) -> LoadResult<Vec<ClusterRun>> {
    let nodes = match backend {
        Backend::Sqlite => Nodes::sqlite(&config.server_bin).await?,
        Backend::Shared | Backend::SharedBalanced => {
            Nodes::shared(config, &config.redis_url, count).await?
        }
        Backend::SharedCluster => {
            let url = config
                .redis_cluster_url
                .as_deref()
                .ok_or(LoadError::Invalid("no Redis Cluster URL"))?;
            Nodes::shared(config, url, count).await?
        }
    };
    let balancer = match (backend, &config.nginx_bin) {
        (Backend::SharedBalanced, Some(nginx)) => {
            let addrs: Vec<_> = nodes.nodes.iter().map(|n| n.target.addr).collect();
            Some(Balancer::start(nginx, &addrs).await?)
        }
        (Backend::SharedBalanced, None) => return Err(LoadError::Invalid("no nginx binary")),
        _ => None,
    };
    let endpoints = match (&balancer, nodes.nodes.first()) {
        (Some(lb), Some(first)) => {
            let front = crate::wire::Target {
                addr: lb.front,
                fingerprint: first.target.fingerprint.clone(),
            };
            vec![Arc::new(Endpoints::new(
                &front,
                ENDPOINTS_PER_NODE * count,
            )?)]
        }
        _ => nodes
            .nodes
            .iter()
            .map(|n| Endpoints::new(&n.target, ENDPOINTS_PER_NODE).map(Arc::new))
            .collect::<LoadResult<Vec<_>>>()?,
    };
    let first = endpoints
        .first()
        .ok_or(LoadError::Invalid("at least one node"))?;
    let devices = provision(first, &run_prefix(), config.devices, SETUP_CONCURRENCY).await?;
    let schema = |nodes: &Nodes| {
        nodes.schema.as_ref().and_then(|s| {
            footprint::schema_bytes(&s.admin_url, &s.name)
                .map_err(|e| log(&format!("schema size: {e}")))
                .ok()
        })
    };
    let redis_url = match backend {
        Backend::Shared | Backend::SharedBalanced => Some(config.redis_url.as_str()),
        Backend::Sqlite | Backend::SharedCluster => None,
    };
    let mut schema_provisioned = None;
    let pids: Vec<u32> = nodes.nodes.iter().map(|n| n.child.pid()).collect();
    let mut offered = vec![None];
    offered.extend(config.rate.map(Some));
    let mut runs = Vec::new();
    for rate in offered {
        let drive = DriveConfig {
            rate,
            ..config.drive.clone()
        };
        let mut channels = login_spread(&endpoints, &devices, SETUP_CONCURRENCY).await?;
        if schema_provisioned.is_none() {
            upload_prekeys(&mut channels, SDK_ONE_TIME_PREKEYS).await?;
            schema_provisioned = schema(&nodes);
        }
        let redis_connected = redis_url
            .zip(nodes.namespace.as_deref())
            .and_then(|(url, namespace)| footprint::redis_namespace_bytes(url, namespace));
        let ids: Vec<u64> = devices.iter().map(|d| d.device_id).collect();
        let sampler = CpuSampler::start(pids.clone());
        let report = pairs::run(channels, &ids, config.messages, &drive).await?;
        let cpu = sampler.finish();
        let footprint = Footprint {
            devices: devices.len(),
            schema_provisioned,
            schema_after: schema(&nodes),
            redis_connected,
        };
        log(&format!(
            "{count} node(s) {backend:?}: {:.0} msg/s, {} of {} delivered",
            report.delivered_rate(),
            report.delivered,
            report.expected
        ));
        runs.push(ClusterRun {
            backend,
            nodes: count,
            offered: rate,
            report,
            cpu,
            footprint,
        });
    }
    for e in &endpoints {
        e.close().await;
    }
    drop(balancer);
    drop(nodes);
    Ok(runs)
}

/// Runs the SQLite comparison (if asked) and every node count in turn.
///
/// # Errors
/// [`LoadError::Invalid`] for an odd device count or a zero node count;
/// the first configuration that cannot run at all (a run that loses
/// messages is reported in its row instead).
pub async fn run(config: &ClusterConfig) -> LoadResult<ClusterReport> {
    if config.devices < 2 || !config.devices.is_multiple_of(2) {
        return Err(LoadError::Invalid("pairs need an even device count"));
    }
    if config.node_counts.contains(&0) {
        return Err(LoadError::Invalid("every node count must be at least 1"));
    }
    let mut runs = Vec::new();
    if config.sqlite_baseline {
        log("1 node on SQLite");
        runs.extend(measure(config, Backend::Sqlite, 1).await?);
    }
    for &count in &config.node_counts {
        runs.extend(measure(config, Backend::Shared, count).await?);
    }
    if config.redis_cluster_url.is_some()
        && let Some(&count) = config.node_counts.iter().max()
    {
        runs.extend(measure(config, Backend::SharedCluster, count).await?);
    }
    if config.nginx_bin.is_some()
        && let Some(&count) = config.node_counts.iter().max()
    {
        runs.extend(measure(config, Backend::SharedBalanced, count).await?);
    }
    Ok(ClusterReport {
        shape: format!(
            "(a) {} devices in pairs × {} msgs, 256 B",
            config.devices, config.messages
        ),
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(backend: Backend, nodes: usize, offered: Option<f64>, delivered: u64) -> ClusterRun {
        ClusterRun {
            backend,
            nodes,
            offered,
            report: DriveReport {
                devices: 2,
                sent_ok: 1000,
                delivered,
                expected: 1000,
                elapsed: Duration::from_secs(1),
                ..DriveReport::default()
            },
            cpu: CpuSplit {
                nodes: Duration::from_millis(100),
                postgres: Duration::from_millis(120),
                redis: Duration::from_millis(30),
                loadgen: Duration::from_secs(5),
                ..CpuSplit::default()
            },
            footprint: Footprint::default(),
        }
    }

    #[test]
    fn the_targets_take_complete_saturation_runs_of_one_node() {
        let report = ClusterReport {
            shape: String::new(),
            runs: vec![
                run(Backend::Sqlite, 1, None, 1000),
                run(Backend::Sqlite, 1, Some(500.0), 1000),
                run(Backend::Shared, 1, Some(500.0), 1000),
                run(Backend::Shared, 1, None, 1000),
                run(Backend::Shared, 2, None, 1000),
            ],
        };
        let f = report.figures();
        assert_eq!(f.embedded_rate, Some(1000.0));
        assert_eq!(f.shared_rate, Some(1000.0));
        // (100 + 120 + 30) ms over 1000 messages; the load generator's
        // own CPU is not counted.
        let us = f.shared_cpu_us.unwrap();
        assert!((us - 250.0).abs() < 1e-6, "{us}");

        // A run that lost messages is not judged.
        let lossy = ClusterReport {
            shape: String::new(),
            runs: vec![
                run(Backend::Sqlite, 1, None, 1000),
                run(Backend::Shared, 1, None, 999),
            ],
        };
        assert_eq!(lossy.figures().shared_rate, None);
        assert!(matches!(
            lossy.checks()[0].verdict,
            targets::Verdict::NotMeasured(_)
        ));
    }
}
