//! The targets of issue 17 ("Server speed"), judged from one run's
//! figures: `suite` (scripts/bench-server.sh) and `cluster`
//! (scripts/bench-cluster.sh) end their output with one line per target,
//! met or missed. Every comparison is against a reference measured in the
//! same run, on the same machine, at the same moment.
//!
//! A missed target measured on a saturated machine carries the CPU cap
//! behind it (cpu.rs).
//!
//! Not owned here: measuring the figures (suite.rs, cluster.rs).

use std::fmt::Write as _;
use std::time::Duration;

use crate::cpu::CpuCost;

/// Workload (a) at saturation: at least this many times mosquitto's rate.
pub const MOSQUITTO_FACTOR: f64 = 2.0;
/// Workload (a) at saturation: at least this share of the plain relay.
pub const RELAY_SHARE: f64 = 0.35;
/// Workload (a) at half of its saturation: p99 below this.
pub const HALF_LOAD_P99: Duration = Duration::from_millis(5);
/// Workload (a) at saturation: at least this many times the durable peer
/// (RabbitMQ, quorum queues, publisher confirms).
pub const DURABLE_FACTOR: f64 = 3.0;
/// Workload (d): at least this many handshakes + logins per second.
pub const LOGINS_PER_SECOND: f64 = 2000.0;
/// Workload (b): the group size whose p50 delivery is judged.
pub const BIG_GROUP: usize = 1000;
/// Workload (b): p50 delivery to a group of [`BIG_GROUP`] below this.
pub const BIG_GROUP_P50: Duration = Duration::from_millis(100);
/// Cluster: one PostgreSQL + Redis node carries at least this share of
/// the embedded store's workload (a) throughput.
pub const CLUSTER_SHARE: f64 = 0.40;
/// Cluster: CPU of the node, PostgreSQL and Redis together per delivered
/// message, at most this many microseconds.
pub const CLUSTER_CPU_US: f64 = 250.0;

/// The judgement on one target.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The figure reaches the target.
    Met,
    /// It does not.
    Missed,
    /// A figure it needs was not measured in this run (skipped, or the run
    /// was incomplete); says which.
    NotMeasured(String),
}

impl Verdict {
    /// `met`, `MISSED` or `not measured: why`.
    pub fn label(&self) -> String {
        match self {
            Self::Met => "met".to_owned(),
            Self::Missed => "MISSED".to_owned(),
            Self::NotMeasured(why) => format!("not measured: {why}"),
        }
    }
}

/// One target with what was measured for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The target, e.g. "(a) saturation ≥ 2× mosquitto".
    pub target: String,
    /// The figures behind the verdict, e.g. "24 492 / 36 146 msg/s = 0.68×".
    pub measured: String,
    /// Met, missed or not measured.
    pub verdict: Verdict,
    /// Why a missed target cannot be met on this machine, when a
    /// measurement says so (e.g. it was CPU-bound); printed after the verdict.
    pub explanation: Option<String>,
}

impl Check {
    /// A check without an explanation.
    fn new(target: String, measured: String, verdict: Verdict) -> Self {
        Self {
            target,
            measured,
            verdict,
            explanation: None,
        }
    }

    /// The verdict cell: the label, then the explanation if any.
    pub fn verdict_cell(&self) -> String {
        match &self.explanation {
            Some(why) => format!("{}; {why}", self.verdict.label()),
            None => self.verdict.label(),
        }
    }

    /// `self`, with `cost`'s CPU-bound explanation attached when the
    /// target was missed and the machine was saturated (cpu.rs).
    fn explained_by(
        mut self,
        cost: Option<&CpuCost>,
        cpus: usize,
        (unit, rate_unit): (&str, &str),
        measured: Option<f64>,
    ) -> Self {
        if self.verdict == Verdict::Missed {
            self.explanation = cost.and_then(|c| c.explain(cpus, unit, rate_unit, measured));
        }
        self
    }
}

/// `value ≥ factor × reference`, shown as a ratio.
fn ratio_check(
    target: String,
    value: Option<f64>,
    reference: Option<f64>,
    factor: f64,
    unit: &str,
    missing: &str,
) -> Check {
    match (value, reference) {
        (Some(v), Some(r)) if r > 0.0 => {
            let ratio = v / r;
            Check::new(
                target,
                format!("{v:.0} / {r:.0} {unit} = {ratio:.2}×"),
                if ratio >= factor {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            )
        }
        _ => Check::new(
            target,
            String::new(),
            Verdict::NotMeasured(missing.to_owned()),
        ),
    }
}

/// `value < limit` for a latency.
fn below(target: String, value: Option<Duration>, limit: Duration, missing: &str) -> Check {
    match value {
        Some(v) => Check::new(
            target,
            format!("{:.2} ms", v.as_secs_f64() * 1e3),
            if v < limit {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        ),
        None => Check::new(
            target,
            String::new(),
            Verdict::NotMeasured(missing.to_owned()),
        ),
    }
}

/// What `suite` measured that the targets need; `None` for what was not
/// measured (skipped, or a run that lost messages).
#[derive(Clone, Debug, Default)]
pub struct ServerFigures {
    /// microbot-server, workload (a) at saturation, msg/s.
    pub server_rate: Option<f64>,
    /// mosquitto, same workload, msg/s.
    pub mosquitto_rate: Option<f64>,
    /// The plain relay, same workload, msg/s.
    pub relay_rate: Option<f64>,
    /// The durable peer (RabbitMQ quorum queues), same workload, msg/s.
    pub durable_rate: Option<f64>,
    /// microbot-server, workload (a) at half of its saturation: p99.
    pub half_load_p99: Option<Duration>,
    /// The plain relay at the same offered load: p99 (the floor).
    pub half_load_floor_p99: Option<Duration>,
    /// Workload (d), handshakes + logins per second.
    pub logins_rate: Option<f64>,
    /// Workload (b), group of [`BIG_GROUP`]: p50 delivery.
    pub big_group_p50: Option<Duration>,
    /// The same burst through the plain relay: p50 delivery (the floor).
    pub big_group_floor_p50: Option<Duration>,
    /// Workload (a) at saturation on microbot-server: CPU per delivered message.
    pub server_cpu: Option<CpuCost>,
    /// Workload (d): CPU per login.
    pub logins_cpu: Option<CpuCost>,
    /// CPUs of this machine (`cpu::available_cpus`), for the CPU caps.
    pub cpus: usize,
}

/// The server targets of issue 17, in the order.
pub fn server_checks(f: &ServerFigures) -> Vec<Check> {
    let missing_server = "microbot-server run incomplete";
    let not_ran = |peer: &str| {
        if f.server_rate.is_none() {
            missing_server.to_owned()
        } else {
            format!("{peer} skipped")
        }
    };
    let logins = match f.logins_rate {
        Some(rate) => Check::new(
            format!("(d) ≥ {LOGINS_PER_SECOND:.0} handshakes + logins/s"),
            format!("{rate:.0} logins/s"),
            if rate >= LOGINS_PER_SECOND {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        ),
        None => Check::new(
            format!("(d) ≥ {LOGINS_PER_SECOND:.0} handshakes + logins/s"),
            String::new(),
            Verdict::NotMeasured("logins failed".to_owned()),
        ),
    }
    .explained_by(
        f.logins_cpu.as_ref(),
        f.cpus,
        ("login", "logins/s"),
        f.logins_rate,
    );
    let per_msg = |check: Check| {
        check.explained_by(
            f.server_cpu.as_ref(),
            f.cpus,
            ("msg", "msg/s"),
            f.server_rate,
        )
    };
    vec![
        per_msg(ratio_check(
            format!("(a) saturation ≥ {MOSQUITTO_FACTOR}× mosquitto (QoS 1)"),
            f.server_rate,
            f.mosquitto_rate,
            MOSQUITTO_FACTOR,
            "msg/s",
            &not_ran("mosquitto"),
        )),
        per_msg(ratio_check(
            format!(
                "(a) saturation ≥ {:.0} % of the plain relay",
                RELAY_SHARE * 100.0
            ),
            f.server_rate,
            f.relay_rate,
            RELAY_SHARE,
            "msg/s",
            &not_ran("relay"),
        )),
        below_floor(
            format!(
                "(a) p99 at ½ of saturation < {} ms",
                HALF_LOAD_P99.as_millis()
            ),
            (f.half_load_p99, f.half_load_floor_p99),
            HALF_LOAD_P99,
            "half-load run incomplete",
            "the same offered load",
        ),
        per_msg(ratio_check(
            format!(
                "(a) saturation ≥ {DURABLE_FACTOR}× the durable peer (RabbitMQ quorum queues + confirms)"
            ),
            f.server_rate,
            f.durable_rate,
            DURABLE_FACTOR,
            "msg/s",
            &not_ran("RabbitMQ"),
        )),
        logins,
        big_group(f),
    ]
}

/// (b) group of [`BIG_GROUP`]: p50 below the limit, shown beside the same
/// burst's p50 through the plain relay.
fn big_group(f: &ServerFigures) -> Check {
    below_floor(
        format!(
            "(b) group of {BIG_GROUP}: p50 delivery < {} ms",
            BIG_GROUP_P50.as_millis()
        ),
        (f.big_group_p50, f.big_group_floor_p50),
        BIG_GROUP_P50,
        "no complete group-of-1000 run",
        "the same burst",
    )
}

/// A latency below `limit`, shown beside the plain relay's figure for
/// `load` (`measured`: the server's and the relay's); a floor at or above
/// the limit says the target is out of this machine's reach.
fn below_floor(
    target: String,
    (value, floor): (Option<Duration>, Option<Duration>),
    limit: Duration,
    missing: &str,
    load: &str,
) -> Check {
    let mut check = below(target, value, limit, missing);
    let (Some(floor), Some(value)) = (floor, value) else {
        return check;
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let _ = write!(
        check.measured,
        " (plain relay: {:.2} ms, {:.1}× it)",
        ms(floor),
        ms(value) / ms(floor).max(1e-3)
    );
    if check.verdict == Verdict::Missed && floor >= limit {
        check.explanation = Some(format!(
            "the plain relay, with no storage and no authentication, needs {:.0} ms for {load} on this machine",
            ms(floor)
        ));
    }
    check
}

/// What `cluster` measured that the targets need.
#[derive(Clone, Debug, Default)]
pub struct ClusterFigures {
    /// One node on the embedded SQLite, workload (a) at saturation, msg/s.
    pub embedded_rate: Option<f64>,
    /// One node on PostgreSQL + Redis, the same, msg/s.
    pub shared_rate: Option<f64>,
    /// CPU of that node + every PostgreSQL and Redis process, µs per
    /// delivered message.
    pub shared_cpu_us: Option<f64>,
}

/// The cluster targets of issue 17.
pub fn cluster_checks(f: &ClusterFigures) -> Vec<Check> {
    let cpu = match f.shared_cpu_us {
        Some(us) => Check::new(
            format!(
                "1 node on PostgreSQL + Redis: CPU (node + PostgreSQL + Redis) ≤ {CLUSTER_CPU_US:.0} µs per delivered message"
            ),
            format!("{us:.0} µs/msg"),
            if us <= CLUSTER_CPU_US {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        ),
        None => Check::new(
            format!(
                "1 node on PostgreSQL + Redis: CPU (node + PostgreSQL + Redis) ≤ {CLUSTER_CPU_US:.0} µs per delivered message"
            ),
            String::new(),
            Verdict::NotMeasured("no complete 1-node PostgreSQL + Redis run".to_owned()),
        ),
    };
    let missing = match (f.embedded_rate, f.shared_rate) {
        (None, _) => "no complete SQLite run (--no-sqlite?)",
        _ => "no complete 1-node PostgreSQL + Redis run",
    };
    vec![
        ratio_check(
            format!(
                "1 node on PostgreSQL + Redis ≥ {:.0} % of the embedded store (same run)",
                CLUSTER_SHARE * 100.0
            ),
            f.shared_rate,
            f.embedded_rate,
            CLUSTER_SHARE,
            "msg/s",
            missing,
        ),
        cpu,
    ]
}

/// The checks as a Markdown table under a heading line, with a count.
pub fn render(title: &str, checks: &[Check]) -> String {
    let mut out = format!("{title}\n\n| target | measured | verdict |\n|---|---|---|\n");
    for c in checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            c.target,
            c.measured,
            c.verdict_cell()
        );
    }
    let count = |f: fn(&Verdict) -> bool| checks.iter().filter(|c| f(&c.verdict)).count();
    let _ = write!(
        out,
        "\n{} met, {} missed, {} not measured",
        count(|v| *v == Verdict::Met),
        count(|v| *v == Verdict::Missed),
        count(|v| matches!(v, Verdict::NotMeasured(_)))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Option<Duration> {
        Some(Duration::from_millis(v))
    }

    fn verdicts(checks: &[Check]) -> Vec<String> {
        checks.iter().map(|c| c.verdict.label()).collect()
    }

    #[test]
    fn server_targets_at_and_around_their_thresholds() {
        // Exactly on every threshold: ratios and rates meet, latencies
        // (strictly below) miss.
        let f = ServerFigures {
            server_rate: Some(42_000.0),
            mosquitto_rate: Some(21_000.0),
            relay_rate: Some(120_000.0),
            durable_rate: Some(14_000.0),
            half_load_p99: ms(5),
            logins_rate: Some(2000.0),
            big_group_p50: ms(100),
            ..ServerFigures::default()
        };
        assert_eq!(
            verdicts(&server_checks(&f)),
            ["met", "met", "MISSED", "met", "met", "MISSED"]
        );
        // Just under on every one.
        let f = ServerFigures {
            server_rate: Some(41_999.0),
            half_load_p99: ms(4),
            logins_rate: Some(1999.9),
            big_group_p50: ms(99),
            ..f
        };
        assert_eq!(
            verdicts(&server_checks(&f)),
            ["MISSED", "MISSED", "met", "MISSED", "MISSED", "met"]
        );
    }

    /// The p99-at-½ check of `f`'s targets.
    fn half_load_check(f: &ServerFigures) -> Check {
        server_checks(f)
            .into_iter()
            .find(|c| c.target.starts_with("(a) p99 at ½"))
            .expect("the half-load check")
    }

    #[test]
    fn the_half_load_tail_is_shown_beside_the_relay_at_the_same_rate() {
        let f = ServerFigures {
            half_load_p99: ms(9),
            half_load_floor_p99: ms(3),
            ..ServerFigures::default()
        };
        let half = half_load_check(&f);
        assert_eq!(half.verdict, Verdict::Missed);
        assert_eq!(half.measured, "9.00 ms (plain relay: 3.00 ms, 3.0× it)");
        assert_eq!(half.explanation, None);
        let f = ServerFigures {
            half_load_floor_p99: ms(6),
            ..f
        };
        let half = half_load_check(&f);
        assert!(
            half.explanation
                .as_deref()
                .is_some_and(|e| e.contains("needs 6 ms for the same offered load")),
            "{half:?}"
        );
    }

    #[test]
    fn the_big_group_is_shown_beside_its_relay_floor() {
        let check = |p50, floor| {
            big_group(&ServerFigures {
                big_group_p50: ms(p50),
                big_group_floor_p50: ms(floor),
                ..ServerFigures::default()
            })
        };
        let low_floor = check(224, 56);
        assert_eq!(low_floor.verdict, Verdict::Missed);
        assert_eq!(
            low_floor.measured,
            "224.00 ms (plain relay: 56.00 ms, 4.0× it)"
        );
        assert_eq!(low_floor.explanation, None);
        let high_floor = check(224, 130);
        assert!(
            high_floor
                .verdict_cell()
                .contains("the plain relay, with no storage and no authentication, needs 130 ms"),
            "{high_floor:?}"
        );
        let met = check(90, 120);
        assert_eq!((met.verdict, met.explanation), (Verdict::Met, None));
        // Without a floor, the plain check.
        let alone = big_group(&ServerFigures {
            big_group_p50: ms(224),
            ..ServerFigures::default()
        });
        assert_eq!(alone.measured, "224.00 ms");
    }

    fn saturated(server_us: f64, loadgen_us: f64, busy: f64) -> Option<CpuCost> {
        Some(CpuCost {
            server_us: Some(server_us),
            loadgen_us,
            machine_busy: busy,
        })
    }

    #[test]
    fn a_missed_target_on_a_saturated_machine_says_what_caps_it() {
        let f = ServerFigures {
            server_rate: Some(24_492.0),
            mosquitto_rate: Some(36_146.0),
            relay_rate: Some(40_000.0),
            logins_rate: Some(1100.0),
            server_cpu: saturated(50.0, 30.0, 0.97),
            logins_cpu: saturated(1000.0, 700.0, 0.95),
            cpus: 2,
            ..ServerFigures::default()
        };
        let checks = server_checks(&f);
        // Missed and saturated: explained, 2e6 / (1000 + 700) = 1176.
        assert_eq!(checks[4].verdict, Verdict::Missed);
        assert_eq!(
            checks[4].verdict_cell(),
            "MISSED; CPU-bound: server 1000 µs + loadgen 700 µs per login on 2 CPUs \
             caps this machine at 1176 logins/s"
        );
        // (a) vs mosquitto, missed: per message, 2e6 / 80 = 25 000.
        assert_eq!(
            checks[0].explanation.as_deref(),
            Some(
                "CPU-bound: server 50 µs + loadgen 30 µs per msg on 2 CPUs \
                 caps this machine at 25000 msg/s"
            )
        );
        // (a) vs the relay was met (0.61 ≥ 0.35): nothing to explain.
        assert_eq!(checks[1].verdict, Verdict::Met);
        assert_eq!(checks[1].explanation, None);
        // Not measured (no RabbitMQ): nothing to explain either.
        assert_eq!(checks[3].explanation, None);
        let text = render("targets", &checks);
        assert!(
            text.contains("| 1100 logins/s | MISSED; CPU-bound: server 1000 µs"),
            "{text}"
        );

        // Missed on a machine below 90 % busy: not CPU-bound, no explanation.
        let idle = ServerFigures {
            logins_cpu: saturated(1000.0, 700.0, 0.89),
            ..f.clone()
        };
        let checks = server_checks(&idle);
        assert_eq!(checks[4].explanation, None);
        assert_eq!(checks[4].verdict_cell(), "MISSED");
        // Met on a saturated machine: nothing to explain.
        let met = ServerFigures {
            logins_rate: Some(2500.0),
            ..f
        };
        assert_eq!(server_checks(&met)[4].explanation, None);
    }

    #[test]
    fn ratios_are_printed_with_both_rates() {
        let f = ServerFigures {
            server_rate: Some(24_492.0),
            mosquitto_rate: Some(36_146.0),
            ..ServerFigures::default()
        };
        let checks = server_checks(&f);
        assert_eq!(checks[0].measured, "24492 / 36146 msg/s = 0.68×");
        assert_eq!(checks[0].verdict, Verdict::Missed);
    }

    #[test]
    fn a_missing_figure_is_not_measured_and_says_why() {
        let f = ServerFigures {
            server_rate: Some(1.0),
            ..ServerFigures::default()
        };
        let checks = server_checks(&f);
        assert_eq!(
            checks[3].verdict,
            Verdict::NotMeasured("RabbitMQ skipped".into())
        );
        let f = ServerFigures {
            mosquitto_rate: Some(1.0),
            ..ServerFigures::default()
        };
        assert_eq!(
            server_checks(&f)[0].verdict,
            Verdict::NotMeasured("microbot-server run incomplete".into())
        );
        // A zero reference cannot be divided by.
        let f = ServerFigures {
            server_rate: Some(1.0),
            mosquitto_rate: Some(0.0),
            ..ServerFigures::default()
        };
        assert!(matches!(
            server_checks(&f)[0].verdict,
            Verdict::NotMeasured(_)
        ));
    }

    #[test]
    fn cluster_targets() {
        let f = ClusterFigures {
            embedded_rate: Some(24_000.0),
            shared_rate: Some(9_600.0),
            shared_cpu_us: Some(250.0),
        };
        assert_eq!(verdicts(&cluster_checks(&f)), ["met", "met"]);
        let f = ClusterFigures {
            embedded_rate: Some(24_000.0),
            shared_rate: Some(1_224.0),
            shared_cpu_us: Some(1446.0),
        };
        let checks = cluster_checks(&f);
        assert_eq!(verdicts(&checks), ["MISSED", "MISSED"]);
        assert_eq!(checks[0].measured, "1224 / 24000 msg/s = 0.05×");
        assert_eq!(checks[1].measured, "1446 µs/msg");
        let none = cluster_checks(&ClusterFigures::default());
        assert!(
            none.iter()
                .all(|c| matches!(c.verdict, Verdict::NotMeasured(_)))
        );
    }

    #[test]
    fn render_counts_each_verdict() {
        let checks = cluster_checks(&ClusterFigures {
            embedded_rate: Some(10.0),
            shared_rate: Some(5.0),
            shared_cpu_us: None,
        });
        let text = render("targets", &checks);
        assert!(text.starts_with("targets\n\n| target | measured | verdict |"));
        assert!(text.contains("| 5 / 10 msg/s = 0.50× | met |"), "{text}");
        assert!(text.ends_with("1 met, 0 missed, 1 not measured"), "{text}");
    }
}
