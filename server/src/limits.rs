//! Abuse limits (SPEC.md §12.12 "Limits"): per-IP and per-account token
//! buckets, exponential back-off of failed credential checks, IP
//! allow/deny lists (from the configuration, and deny rules an admin
//! edits on the dashboard, SPEC.md §18.7) and connection caps.
//!
//! Token buckets are in memory, one per (limit, key): capacity = the
//! configured per-minute count, refilled continuously at that rate; a
//! refused request gets `ERROR_CODE_RATE_LIMITED` with the time until one
//! token is back in `retry_after_ms`. A limit of 0 is off. State is lost on
//! restart (a restart is rare and costs an attacker nothing it could not
//! get by waiting a minute). Every map is bounded in entries and key bytes
//! ([`buckets`], [`backoff`]); usernames are validated before they get here.
//!
//! Per-IP limits key on [`source_key`]: the IPv4 address, or the IPv6 /64.
//!
//! Credential back-off ([`backoff`]): keyed on username + source before
//! login, on username + device after ([`backoff_key`]), so a stranger's
//! wrong guesses never lock the owner out. After
//! `login_backoff_after_failures` failures in a row the key is locked for
//! `login_backoff_base_ms × 2^(failures − threshold)` (capped at
//! `login_backoff_max_ms`); while locked every credential check under that
//! key is refused before the password or code is looked at. Each attempt
//! is reserved before it runs ([`CredentialAttempt`]), so concurrent
//! guesses cannot exceed the threshold. A success resets the record.
//!
//! Several nodes: with a Redis configured, buckets and back-off records
//! live in Redis ([`shared`]) and hold across the cluster; the in-memory
//! ones above serve only while Redis is unreachable. Connection caps stay
//! per node (they protect the node's own sockets and memory).
//!
//! Live-editable limits ([`EDITABLE`], SPEC.md §18.7 Rate limits): an
//! admin may override some per-minute rates on the dashboard; the stored
//! overrides are loaded on every node (admin/rate_limits.rs) and replace
//! the configured value until removed. A changed rate starts this node's
//! buckets of that limit afresh.
//!
//! Not owned here: which request is what (dispatch.rs calls in).

pub mod backoff;
pub mod buckets;
pub mod quotas;
mod rate_limited;
pub mod shared;

pub use rate_limited::RateLimited;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use microbot_protocol::transport::{ErrorCode, client_frame::Request};

use crate::auth::devices::Caller;
use crate::config::Config;
use crate::metrics::Metrics;
use backoff::{Backoffs, Outcome};
use buckets::{Footprint, KeyBytes, TokenBuckets};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Connections currently open (handshake complete), in total and per
/// source ([`source_key`]), and handshakes in progress.
#[derive(Default)]
struct Slots {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
    handshakes: u32,
}

/// A handshake in progress; ends (uncounted) when dropped.
pub struct HandshakeSlot {
    limits: Arc<Limits>,
}

impl std::fmt::Debug for HandshakeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeSlot").finish_non_exhaustive()
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut slots = lock(&self.limits.slots);
        slots.handshakes = slots.handshakes.saturating_sub(1);
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The address is on the deny list or not on a non-empty allow list.
    Blocked,
    /// The server holds `max_connections` already.
    TooManyConnections,
    /// This address holds `max_connections_per_ip` already.
    TooManyFromAddress,
}

/// Releases a connection slot when dropped.
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut slots = lock(&self.limits.slots);
        slots.total = slots.total.saturating_sub(1);
        if let Some(n) = slots.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                slots.per_ip.remove(&self.ip);
            }
        }
    }
}

/// One per-minute rate an admin may change on the dashboard (SPEC.md
/// §18.7 Rate limits): the one rule for its name, what it limits and where
/// its default (the server's setting) comes from; every editable rate may
/// be set from 0 (off) to [`MAX_EDITABLE_PER_MINUTE`].
#[derive(Debug)]
pub struct Editable {
    /// The setting's name (as in the configuration file).
    pub name: &'static str,
    /// What it limits.
    pub description: &'static str,
    /// The server's setting, used while no override is stored.
    pub configured: fn(&Config) -> u32,
}

/// The per-minute rates an admin may change on the dashboard; the admin
/// API, the stored overrides and the dashboard's list all come from here.
pub const EDITABLE: &[Editable] = &[
    Editable {
        name: "rate_register_per_ip",
        description: "registrations and provisioning slots per minute per source address",
        configured: |c| c.rate_register_per_ip,
    },
    Editable {
        name: "rate_login_per_ip",
        description: "logins per minute per source address",
        configured: |c| c.rate_login_per_ip,
    },
    Editable {
        name: "rate_login_per_account",
        description: "credential checks per minute per account",
        configured: |c| c.rate_login_per_account,
    },
    Editable {
        name: "rate_send_per_account",
        description: "sends and recipient devices per minute per account (sealed sends: per source address and per recipient key)",
        configured: |c| c.rate_send_per_account,
    },
    Editable {
        name: "rate_prekey_fetch_per_account",
        description: "prekey fetches per minute per account",
        configured: |c| c.rate_prekey_fetch_per_account,
    },
    Editable {
        name: "rate_upload_per_account",
        description: "attachment uploads per minute per account",
        configured: |c| c.rate_upload_per_account,
    },
    Editable {
        name: "rate_group_change_per_account",
        description: "group changes per minute per account",
        configured: |c| c.rate_group_change_per_account,
    },
    Editable {
        name: "rate_group_change_per_group",
        description: "changes per minute per group",
        configured: |c| c.rate_group_change_per_group,
    },
    Editable {
        name: "rate_prekey_upload_per_account",
        description: "prekey uploads per minute per account",
        configured: |c| c.rate_prekey_upload_per_account,
    },
    Editable {
        name: "rate_prekey_fetch_per_target",
        description: "prekey fetches per minute of one account by one fetcher",
        configured: |c| c.rate_prekey_fetch_per_target,
    },
];

/// The editable rate called `name`, if there is one.
pub fn editable(name: &str) -> Option<&'static Editable> {
    EDITABLE.iter().find(|e| e.name == name)
}

/// The highest rate an admin may set, per minute.
pub const MAX_EDITABLE_PER_MINUTE: u32 = 1_000_000;

/// Token buckets at the rate of one editable setting ([`EDITABLE`]), which
/// may change live: rebuilt (all full) when it does.
struct LiveBuckets<K> {
    /// The setting whose rate (override or configured) applies.
    setting: &'static str,
    current: Mutex<(u32, Arc<TokenBuckets<K>>)>,
}

impl<K: Hash + Eq + Clone + KeyBytes> LiveBuckets<K> {
    fn new(setting: &'static str, per_minute: u32) -> Self {
        Self {
            setting,
            current: Mutex::new((per_minute, Arc::new(TokenBuckets::per_minute(per_minute)))),
        }
    }

    /// The buckets at `per_minute`.
    fn at(&self, per_minute: u32) -> Arc<TokenBuckets<K>> {
        let mut current = lock(&self.current);
        if current.0 != per_minute {
            *current = (per_minute, Arc::new(TokenBuckets::per_minute(per_minute)));
        }
        Arc::clone(&current.1)
    }

    fn footprint(&self) -> Footprint {
        lock(&self.current).1.footprint()
    }
}

/// Every limit of one server.
pub struct Limits {
    config: Config,
    login_ip: LiveBuckets<IpAddr>,
    login_account: LiveBuckets<String>,
    register_ip: LiveBuckets<IpAddr>,
    send_account: LiveBuckets<i64>,
    prekey_fetch_account: LiveBuckets<i64>,
    upload_account: LiveBuckets<i64>,
    sealed_ip: LiveBuckets<IpAddr>,
    sealed_key: LiveBuckets<String>,
    /// Rates set on the dashboard, by setting name.
    overrides: Mutex<Arc<HashMap<&'static str, u32>>>,
    backoffs: Backoffs,
    slots: Mutex<Slots>,
    shared: Option<shared::SharedLimits>,
    quotas: quotas::QuotaBuckets,
    /// IP rules from the dashboard (admin/ip_rules.rs keeps them current).
    dashboard_rules: Mutex<Arc<DashboardRules>>,
}

/// The IP rules made on the dashboard (SPEC.md §18.7 IP rules), beside
/// `deny_ips` / `allow_ips` from the settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardRules {
    /// Blocks refused like `deny_ips`.
    pub deny: Vec<ipnet::IpNet>,
    /// Blocks allowed like `allow_ips`: once either list names a block,
    /// only addresses in one of them may connect.
    pub allow: Vec<ipnet::IpNet>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

/// The username whose credentials a request checks, if any.
pub fn credential_subject<'a>(request: &'a Request, caller: Option<&'a Caller>) -> Option<&'a str> {
    match request {
        Request::ConfirmRegistration(r) => Some(&r.username),
        Request::EnrolDevice(r) => Some(&r.username),
        Request::ChangePassword(_) | Request::RemoveDevice(_) | Request::DeleteAccount(_) => {
            caller.map(|s| s.username.as_str())
        }
        _ => None,
    }
}

/// The back-off key of a credential-checking request (SPEC.md §12.12):
/// before login `username@source` (source: [`source_key`] of the address),
/// so guesses from elsewhere never lock the owner out; on a logged-in
/// connection `username#device_id`, so only that device's own failures
/// lock its checks.
pub fn backoff_key(request: &Request, caller: Option<&Caller>, ip: IpAddr) -> Option<String> {
    let username = credential_subject(request, caller)?;
    Some(match caller {
        Some(s) => format!("{username}#{}", s.device_id),
        None => format!("{username}@{}", source_key(ip)),
    })
}

/// A credential attempt reserved against the back-off: settle it with
/// [`CredentialAttempt::finish`]; dropped unsettled, it is released
/// without counting.
#[must_use = "an attempt counts as in flight until it is finished or dropped"]
pub struct CredentialAttempt<'a> {
    limits: &'a Limits,
    key: String,
    /// Reserved in Redis (else in this node's records).
    shared: bool,
    settled: bool,
}

impl std::fmt::Debug for CredentialAttempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialAttempt")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl CredentialAttempt<'_> {
    /// Records the outcome: a wrong password, wrong or replayed code counts
    /// as a failure, a success clears the record, other errors count
    /// nothing.
    pub fn finish(mut self, outcome: Result<(), ErrorCode>) {
        let outcome = match outcome {
            Ok(()) => Outcome::Success,
            Err(
                ErrorCode::InvalidCredentials
                | ErrorCode::InvalidSecondFactor
                | ErrorCode::TotpReplayed,
            ) => Outcome::Failure,
            Err(_) => Outcome::Neutral,
        };
        self.settle(outcome);
    }

    fn settle(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        if self.shared
            && let Some(shared) = &self.limits.shared
            && shared
                .finish_attempt(&self.key, outcome, self.limits.backoff_params())
                .is_ok()
        {
            return;
        }
        // Reserved locally, or Redis went away meanwhile: settle here (a
        // record that does not exist here is ignored).
        self.limits.backoffs.finish(&self.key, outcome);
    }
}

impl Drop for CredentialAttempt<'_> {
    fn drop(&mut self) {
        self.settle(Outcome::Neutral);
    }
}

impl Limits {
    /// Limits from the configuration, shared through Redis when `shared`
    /// is given.
    pub fn with_shared(config: &Config, shared: Option<shared::SharedLimits>) -> Self {
        Self {
            shared,
            ..Self::new(config)
        }
    }

    /// Limits from the configuration, kept in this process.
    pub fn new(config: &Config) -> Self {
        Self {
            config: config.clone(),
            login_ip: LiveBuckets::new("rate_login_per_ip", config.rate_login_per_ip),
            login_account: LiveBuckets::new(
                "rate_login_per_account",
                config.rate_login_per_account,
            ),
            register_ip: LiveBuckets::new("rate_register_per_ip", config.rate_register_per_ip),
            send_account: LiveBuckets::new("rate_send_per_account", config.rate_send_per_account),
            prekey_fetch_account: LiveBuckets::new(
                "rate_prekey_fetch_per_account",
                config.rate_prekey_fetch_per_account,
            ),
            upload_account: LiveBuckets::new(
                "rate_upload_per_account",
                config.rate_upload_per_account,
            ),
            sealed_ip: LiveBuckets::new("rate_send_per_account", config.rate_send_per_account),
            sealed_key: LiveBuckets::new("rate_send_per_account", config.rate_send_per_account),
            overrides: Mutex::new(Arc::new(HashMap::new())),
            backoffs: Backoffs::new(shared::Backoff {
                after: config.login_backoff_after_failures,
                base_ms: config.login_backoff_base_ms,
                max_ms: config.login_backoff_max_ms,
            }),
            slots: Mutex::new(Slots::default()),
            shared: None,
            quotas: quotas::QuotaBuckets::new(config),
            dashboard_rules: Mutex::new(Arc::new(DashboardRules::default())),
        }
    }

    /// Replaces the IP rules edited on the dashboard; they apply to new
    /// connections like `deny_ips` and `allow_ips`.
    pub fn set_dashboard_rules(&self, rules: DashboardRules) {
        *lock(&self.dashboard_rules) = Arc::new(rules);
    }

    /// The configured value of an editable rate ([`EDITABLE`]), `None` for
    /// another name.
    pub fn configured_rate(&self, name: &str) -> Option<u32> {
        editable(name).map(|e| (e.configured)(&self.config))
    }

    /// The rate in force for an editable limit: its dashboard override, or
    /// the configured value (0 for an unknown name).
    pub fn rate(&self, name: &str) -> u32 {
        if let Some(n) = lock(&self.overrides).get(name) {
            return *n;
        }
        self.configured_rate(name).unwrap_or(0)
    }

    /// Replaces the dashboard's overrides; unknown names are ignored (a
    /// newer node's), rates are capped at [`MAX_EDITABLE_PER_MINUTE`].
    pub fn set_rate_overrides(&self, overrides: &[(String, u32)]) {
        let map = overrides
            .iter()
            .filter_map(|(name, n)| {
                editable(name).map(|e| (e.name, (*n).min(MAX_EDITABLE_PER_MINUTE)))
            })
            .collect();
        *lock(&self.overrides) = Arc::new(map);
    }

    /// The IP rules from the dashboard in force on this node.
    pub fn dashboard_rules(&self) -> Arc<DashboardRules> {
        Arc::clone(&lock(&self.dashboard_rules))
    }

    fn backoff_params(&self) -> shared::Backoff {
        shared::Backoff {
            after: self.config.login_backoff_after_failures,
            base_ms: self.config.login_backoff_base_ms,
            max_ms: self.config.login_backoff_max_ms,
        }
    }

    /// Entries and key bytes held by every in-memory limiter map (token
    /// buckets and back-off records) of this node.
    pub fn footprint(&self) -> Footprint {
        self.login_ip.footprint()
            + self.login_account.footprint()
            + self.register_ip.footprint()
            + self.send_account.footprint()
            + self.sealed_ip.footprint()
            + self.sealed_key.footprint()
            + self.prekey_fetch_account.footprint()
            + self.upload_account.footprint()
            + self.backoffs.footprint()
    }

    /// Admits a connection from `ip` whose handshake has completed, or
    /// says why not.
    ///
    /// # Errors
    /// [`Refusal`].
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        self.screen(ip)?;
        let ip = source_key(ip);
        let mut slots = lock(&self.slots);
        if slots.total >= self.config.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        let here = slots.per_ip.entry(ip).or_insert(0);
        if *here >= self.config.max_connections_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        *here += 1;
        slots.total += 1;
        Ok(ConnectionSlot {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Whether the caps are already reached by open connections (checked
    /// before a handshake, without taking anything, so a client refused
    /// anyway is refused early).
    ///
    /// # Errors
    /// [`Refusal`].
    pub fn precheck(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.screen(ip)?;
        let slots = lock(&self.slots);
        if slots.total >= self.config.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        if slots.per_ip.get(&source_key(ip)).copied().unwrap_or(0)
            >= self.config.max_connections_per_ip
        {
            return Err(Refusal::TooManyFromAddress);
        }
        Ok(())
    }

    /// Starts counting a handshake; `None` when `max_connections`
    /// handshakes are in progress already.
    pub fn begin_handshake(self: &Arc<Self>) -> Option<HandshakeSlot> {
        let mut slots = lock(&self.slots);
        if slots.handshakes >= self.config.max_connections {
            return None;
        }
        slots.handshakes += 1;
        Some(HandshakeSlot {
            limits: Arc::clone(self),
        })
    }

    /// Handshakes in progress now.
    pub fn handshakes_in_progress(&self) -> u32 {
        lock(&self.slots).handshakes
    }

    /// Whether a new connection whose address is not validated must first
    /// answer a QUIC Retry (`retry_above_handshakes`; 0: always).
    pub fn wants_retry(&self) -> bool {
        let threshold = self.config.retry_above_handshakes;
        threshold == 0 || lock(&self.slots).handshakes >= threshold
    }

    /// Checks `ip` against the deny and allow lists, the settings' and the
    /// dashboard's: a denied block is refused; when any allow rule exists,
    /// an address in none of them is refused too.
    ///
    /// # Errors
    /// [`Refusal::Blocked`].
    pub fn screen(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = canonical(ip);
        let dashboard = self.dashboard_rules();
        let in_any = |nets: &[ipnet::IpNet]| nets.iter().any(|net| net.contains(&ip));
        let allow_listed = !self.config.allow_ips.is_empty() || !dashboard.allow.is_empty();
        if in_any(&self.config.deny_ips)
            || in_any(&dashboard.deny)
            || (allow_listed && !in_any(&self.config.allow_ips) && !in_any(&dashboard.allow))
        {
            return Err(Refusal::Blocked);
        }
        Ok(())
    }

    /// Applies the rate limits to one request and, for a request that
    /// checks a password or second factor, reserves the attempt against
    /// the credential back-off (before anything is evaluated, so
    /// concurrent guesses cannot overtake it). The caller validates the
    /// request's usernames first (`auth::check_usernames`).
    ///
    /// # Errors
    /// [`RateLimited`] by the first limit the request exceeds.
    pub fn check_request(
        &self,
        metrics: &Metrics,
        ip: IpAddr,
        caller: Option<&Caller>,
        request: &Request,
    ) -> Result<Option<CredentialAttempt<'_>>, RateLimited> {
        let ip = source_key(ip);
        let refuse = |limit: &'static str, what: &'static str, ms: u64| {
            metrics.rate_limited(limit);
            RateLimited {
                what,
                retry_after_ms: ms,
            }
        };
        let account = caller.map(|s| s.account_id);
        match request {
            // A provisioning slot (§12.14) costs a row like a registration.
            Request::Register(_) | Request::CreateProvisioningSlot(_) => self
                .take_live("register_ip", &self.register_ip, ip)
                .map_err(|ms| refuse("register_ip", "registrations", ms))?,
            Request::Login(_) => self
                .take_live("login_ip", &self.login_ip, ip)
                .map_err(|ms| refuse("login_ip", "login attempts", ms))?,
            Request::Send(_) | Request::SendGroup(_) => {
                if let Some(a) = account {
                    self.take_live("send_account", &self.send_account, a)
                        .map_err(|ms| refuse("send_account", "sends", ms))?;
                }
            }
            // Sealed sends (§19.8) name no sender: they are limited per
            // source address and per (recipient, access key), each at the
            // per-account send rate.
            Request::SendSealed(r) => {
                self.take_live("sealed_ip", &self.sealed_ip, ip)
                    .map_err(|ms| refuse("sealed_ip", "sealed sends", ms))?;
                self.take_live(
                    "sealed_key",
                    &self.sealed_key,
                    crate::sealed::rate_key(&r.recipient_username, &r.access_key),
                )
                .map_err(|ms| refuse("sealed_key", "sealed sends", ms))?;
            }
            Request::FetchPrekeys(_) => {
                if let Some(a) = account {
                    self.take_live("prekey_fetch_account", &self.prekey_fetch_account, a)
                        .map_err(|ms| refuse("prekey_fetch_account", "prekey fetches", ms))?;
                }
            }
            Request::AttachmentUpload(_) => {
                if let Some(a) = account {
                    self.take_live("upload_account", &self.upload_account, a)
                        .map_err(|ms| refuse("upload_account", "uploads", ms))?;
                }
            }
            _ => {}
        }
        let Some(key) = backoff_key(request, caller, ip) else {
            return Ok(None);
        };
        match (caller, credential_subject(request, caller)) {
            // Before login: per source address and per username, whoever
            // asks (the username bucket caps guesses spread over many
            // addresses).
            (None, Some(username)) => {
                self.take_live("login_ip", &self.login_ip, ip)
                    .map_err(|ms| refuse("login_ip", "login attempts", ms))?;
                self.take_live("login_account", &self.login_account, username.to_owned())
                    .map_err(|ms| refuse("login_account", "login attempts", ms))?;
            }
            // A logged-in device: its own bucket, untouched by others.
            _ => {
                self.take_live("login_account", &self.login_account, key.clone())
                    .map_err(|ms| refuse("login_account", "login attempts", ms))?;
            }
        }
        self.begin_attempt(key)
            .map_err(|ms| refuse("login_backoff", "failed logins", ms))
            .map(Some)
    }

    /// One token of a limit: from Redis when shared and reachable, else
    /// from this node's buckets.
    fn take<K: Hash + Eq + Clone + KeyBytes + std::fmt::Display>(
        &self,
        name: &str,
        local: &TokenBuckets<K>,
        per_minute: u32,
        key: K,
    ) -> Result<(), u64> {
        if per_minute == 0 {
            return Ok(());
        }
        if let Some(shared) = &self.shared
            && let Ok(outcome) = shared.take(name, &key.to_string(), per_minute)
        {
            return outcome;
        }
        local.check(key)
    }

    /// [`Limits::take`] from a limit whose rate may change live, at its
    /// setting's rate in force (looked up only for the request that needs it).
    fn take_live<K: Hash + Eq + Clone + KeyBytes + std::fmt::Display>(
        &self,
        name: &str,
        local: &LiveBuckets<K>,
        key: K,
    ) -> Result<(), u64> {
        let per_minute = self.rate(local.setting);
        self.take(name, &local.at(per_minute), per_minute, key)
    }

    fn begin_attempt(&self, key: String) -> Result<CredentialAttempt<'_>, u64> {
        if let Some(shared) = &self.shared
            && let Ok(outcome) = shared.begin_attempt(&key, self.backoff_params())
        {
            outcome?;
            return Ok(CredentialAttempt {
                limits: self,
                key,
                shared: true,
                settled: false,
            });
        }
        self.backoffs.begin(&key)?;
        Ok(CredentialAttempt {
            limits: self,
            key,
            shared: false,
            settled: false,
        })
    }

    /// Reserves and settles one credential attempt of `username` from `ip`
    /// (before login) in one call: for tools and tests that play a
    /// request's outcome without running it.
    ///
    /// # Errors
    /// The retry delay when the attempt would be refused.
    pub fn record_credentials(
        &self,
        ip: IpAddr,
        username: &str,
        outcome: Result<(), ErrorCode>,
    ) -> Result<(), u64> {
        let key = format!("{username}@{}", source_key(ip));
        self.begin_attempt(key)?.finish(outcome);
        Ok(())
    }
}

/// IPv4-mapped IPv6 addresses are matched as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The address per-IP limits key on: an IPv4 address (IPv4-mapped IPv6
/// included) as it is, an IPv6 address as its /64 network (one subscriber
/// usually holds a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
