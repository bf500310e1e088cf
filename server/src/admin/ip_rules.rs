//! IP rules edited on the dashboard (SPEC.md §18.7): an admin (role
//! `admin`) adds or removes a deny or allow rule for a CIDR block; the
//! rule is stored (shared by every node of a cluster), audited
//! (`ip_rule`), and applies to new connections like `deny_ips` /
//! `allow_ips` — at once on the node that took the change, within
//! [`REFRESH_EVERY`] on the others. Connections already open stay open.
//!
//! Not owned here: the check on a new connection (limits.rs `screen`), the
//! table (storage/admin.rs).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::api::{Api, audit_change, changer, reader};
use super::error::AdminError;
use crate::limits::DashboardRules;
use crate::state::ServerState;
use crate::storage::admin::IpRuleRecord;

/// How often each node reloads the rules from storage.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Most dashboard rules.
pub const MAX_RULES: usize = 1000;

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not an address or CIDR block.
    #[error("not an IP address or CIDR block (like 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)")]
    Malformed,
    /// A kind other than `deny` or `allow`.
    #[error("a rule is \"deny\" or \"allow\"")]
    UnsupportedKind,
}

/// Parses an address (a one-address block) or a CIDR block, canonical:
/// host bits cleared, an IPv4-mapped IPv6 address read as IPv4.
///
/// # Errors
/// [`RuleError::Malformed`].
pub fn parse_block(text: &str) -> Result<IpNet, RuleError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 64 {
        return Err(RuleError::Malformed);
    }
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(
            text.parse::<std::net::IpAddr>()
                .map_err(|_| RuleError::Malformed)?,
        ),
    };
    let net = match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                IpNet::new(v4.into(), v6.prefix_len() - 96).map_err(|_| RuleError::Malformed)?
            }
            _ => net,
        },
        IpNet::V4(_) => net,
    };
    Ok(net.trunc())
}

/// Loads the rules from storage into this node's limits.
///
/// # Errors
/// [`AdminError::Storage`], [`AdminError::Internal`].
pub async fn refresh(state: &Arc<ServerState>) -> Result<Vec<IpRuleRecord>, AdminError> {
    let rules = state.storage.ip_rules().await?;
    // A stored block this build cannot read is skipped (it was checked when made).
    let of_kind = |kind: &str| {
        rules
            .iter()
            .filter(|r| r.kind == kind)
            .filter_map(|r| r.cidr.parse::<IpNet>().ok())
            .collect()
    };
    state.limits.set_dashboard_rules(DashboardRules {
        deny: of_kind("deny"),
        allow: of_kind("allow"),
    });
    Ok(rules)
}

/// Keeps this node's dashboard rules and rate-limit overrides
/// (rate_limits.rs) current until `stop`: loads them at once, then every
/// [`REFRESH_EVERY`] (other nodes' changes).
pub async fn refresh_loop(state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(error) = refresh(&state).await {
                    tracing::warn!(%error, "could not load the dashboard's IP rules");
                }
                if let Err(error) = super::rate_limits::refresh(&state).await {
                    tracing::warn!(%error, "could not load the dashboard's rate limits");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// One rule as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct RuleRow {
    /// `deny` or `allow`.
    kind: String,
    /// CIDR block.
    cidr: String,
    /// `config` (the server's settings, not editable here) or `dashboard`.
    source: &'static str,
    /// Who made a dashboard rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<String>,
    /// When a dashboard rule was made, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at_ms: Option<u64>,
}

/// `GET /admin/api/ip-rules`'s answer.
#[derive(Debug, Serialize)]
pub(super) struct Rules {
    rules: Vec<RuleRow>,
}

fn rows(state: &ServerState, dashboard: Vec<IpRuleRecord>) -> Rules {
    let config = &state.config;
    let from_config = config
        .deny_ips
        .iter()
        .map(|n| ("deny", n))
        .chain(config.allow_ips.iter().map(|n| ("allow", n)))
        .map(|(kind, n)| RuleRow {
            kind: kind.to_owned(),
            cidr: n.to_string(),
            source: "config",
            created_by: None,
            created_at_ms: None,
        });
    let from_dashboard = dashboard.into_iter().map(|r| RuleRow {
        kind: r.kind,
        cidr: r.cidr,
        source: "dashboard",
        created_by: Some(r.created_by),
        created_at_ms: Some(r.created_at_ms),
    });
    Rules {
        rules: from_config.chain(from_dashboard).collect(),
    }
}

/// `GET /admin/api/ip-rules`: the rules in force (any role).
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<axum::Json<Rules>, AdminError> {
    reader(&api, &headers).await?;
    let dashboard = refresh(&api.state).await?;
    Ok(axum::Json(rows(&api.state, dashboard)))
}

/// The body of `POST /admin/api/ip-rules`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRule {
    /// `deny` or `allow`.
    kind: String,
    /// An address or CIDR block.
    cidr: String,
}

/// `POST /admin/api/ip-rules`: adds a deny or allow rule (role `admin`,
/// audited). One rule per block.
pub(super) async fn add(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    body: Result<axum::Json<NewRule>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::Json<Rules>, AdminError> {
    let who = changer(&api, &method, &headers).await?;
    let axum::Json(new) = body.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    let kind = match new.kind.as_str() {
        "deny" => "deny",
        "allow" => "allow",
        _ => {
            return Err(AdminError::BadRequest(
                RuleError::UnsupportedKind.to_string(),
            ));
        }
    };
    let net = parse_block(&new.cidr).map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let rule = IpRuleRecord {
        kind: kind.to_owned(),
        cidr: net.to_string(),
        created_by: who.name.clone(),
        created_at_ms: api.state.now_ms(),
    };
    let added = if api.state.storage.ip_rules().await?.len() >= MAX_RULES {
        None
    } else {
        Some(api.state.storage.add_ip_rule(&rule).await?)
    };
    match added {
        None => {
            return Err(AdminError::BadRequest(format!("at most {MAX_RULES} rules")));
        }
        Some(false) => {
            return Err(AdminError::BadRequest(format!(
                "{} has a rule already",
                rule.cidr
            )));
        }
        Some(true) => {}
    }
    let did = if kind == "deny" { "denied" } else { "allowed" };
    audit_change(&api, &who, "ip_rule", format!("{did} {}", rule.cidr)).await?;
    let dashboard = refresh(&api.state).await?;
    Ok(axum::Json(rows(&api.state, dashboard)))
}

/// The query of `DELETE /admin/api/ip-rules`.
#[derive(Deserialize)]
pub(super) struct Which {
    /// The rule's CIDR block.
    cidr: String,
}

/// `DELETE /admin/api/ip-rules?cidr=…`: removes a dashboard rule (role
/// `admin`, audited).
pub(super) async fn remove(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<Which>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Rules>, AdminError> {
    let who = changer(&api, &method, &headers).await?;
    let Query(which) = query.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    let cidr = parse_block(&which.cidr)
        .map_err(|e| AdminError::BadRequest(e.to_string()))?
        .to_string();
    let removed = api.state.storage.remove_ip_rule(&cidr).await?;
    let Some(kind) = removed else {
        return Err(AdminError::NotFound(format!(
            "no dashboard rule for {cidr}"
        )));
    };
    audit_change(
        &api,
        &who,
        "ip_rule",
        format!("removed the {kind} rule for {cidr}"),
    )
    .await?;
    let dashboard = refresh(&api.state).await?;
    Ok(axum::Json(rows(&api.state, dashboard)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_canonical() {
        let ok = |t: &str| parse_block(t).map(|n| n.to_string());
        assert_eq!(ok("203.0.113.7"), Ok("203.0.113.7/32".into()));
        assert_eq!(ok(" 10.1.2.3/8 "), Ok("10.0.0.0/8".into()));
        assert_eq!(ok("2001:db8::1/32"), Ok("2001:db8::/32".into()));
        assert_eq!(ok("::1"), Ok("::1/128".into()));
        assert_eq!(ok("::ffff:127.0.0.1"), Ok("127.0.0.1/32".into()));
        assert_eq!(ok("::ffff:10.0.0.0/104"), Ok("10.0.0.0/8".into()));
        for bad in [
            "",
            "x",
            "10.0.0.0/33",
            "1.2.3",
            "10.0.0.0/8/1",
            &"1".repeat(65),
        ] {
            assert_eq!(parse_block(bad), Err(RuleError::Malformed), "{bad:?}");
        }
    }
}
