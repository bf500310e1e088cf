//! Opening a profile's account and bringing it online for one command:
//! open the store, start the SDK's background connection, and wait until
//! the first sync is done (or report why it could not connect). Events
//! that arrive before that (messages fetched from the server's queue) are
//! kept for the command. Not owned here: the connection itself (the SDK).

use std::collections::VecDeque;
use std::time::Duration;

use microbot_client::{
    Account, AccountConfig, ConnectionState, Conversation, Event, Events, MessageId,
    MessageIdText as _,
};
use tokio::time::Instant;

use crate::error::{self, CliError};
use crate::profile::{Profile, ProfileMeta};

/// What every command gets: the profile and the global options.
#[derive(Debug)]
pub struct Ctx {
    /// The selected profile.
    pub profile: Profile,
    /// How long to wait for the server.
    pub connect_timeout: Duration,
}

/// The SDK tunables the CLI runs with.
pub fn account_config(device_name: &str) -> AccountConfig {
    let mut config = AccountConfig::default();
    config.reconnect_min = Duration::from_millis(200);
    config.reconnect_max = Duration::from_secs(10);
    config.device_name = device_name.to_owned();
    config
}

/// Shortest wait for one node's handshake.
const MIN_ATTEMPT: Duration = Duration::from_secs(2);
/// Longest wait for one node's handshake (the SDK's default).
const MAX_ATTEMPT: Duration = Duration::from_secs(10);

/// What the SDK's automatic transport gives QUIC before it tries the
/// WebSocket at the same address (its `QUIC_FALLBACK_AFTER`): an attempt
/// on a dead node takes this plus the handshake timeout.
const QUIC_FIRST: Duration = Duration::from_secs(3);

/// How long one node of `nodes` may take to answer when the whole command
/// waits `total`: with several nodes, a share of `total` less the QUIC
/// try that comes first, so a dead node (the first in the device's order)
/// leaves time for the next ones (SPEC.md §12.1); never less than
/// [`MIN_ATTEMPT`] or more than [`MAX_ATTEMPT`].
pub fn attempt_timeout(nodes: usize, total: Duration) -> Duration {
    if nodes <= 1 {
        return total.clamp(MIN_ATTEMPT, MAX_ATTEMPT);
    }
    let nodes = u32::try_from(nodes).unwrap_or(u32::MAX);
    (total / nodes)
        .saturating_sub(QUIC_FIRST)
        .clamp(MIN_ATTEMPT, MAX_ATTEMPT)
}

/// An account opened from its profile (not connected).
pub struct Opened {
    /// The account.
    pub account: Account,
    /// Its events.
    pub events: Events,
    /// The profile's metadata.
    pub meta: ProfileMeta,
}

impl Ctx {
    /// Opens the profile's account without connecting.
    pub fn open(&self) -> Result<Opened, CliError> {
        let meta = self.profile.load_enrolled()?;
        let mut config = account_config("microbot CLI");
        config.connect_timeout =
            attempt_timeout(meta.server.split(',').count(), self.connect_timeout);
        let (account, events) =
            Account::open(&self.profile.store_config(), config).map_err(error::open)?;
        Ok(Opened {
            account,
            events,
            meta,
        })
    }

    /// Opens the profile's account and connects it.
    pub async fn online(&self) -> Result<Online, CliError> {
        let opened = self.open()?;
        Online::connect(opened, self.connect_timeout).await
    }
}

/// A connected account, for the length of one command.
pub struct Online {
    /// The account.
    pub account: Account,
    /// Its events.
    pub inbox: Inbox,
    /// The server's address (for messages).
    pub server: String,
}

/// The events of an [`Online`] account (a separate field, so a command can
/// hold the account and wait for events at the same time).
pub struct Inbox {
    events: Events,
    backlog: VecDeque<Event>,
    server: String,
}

impl Online {
    /// Starts the connection of `opened` and waits (up to `timeout`) until
    /// it is logged in and has fetched what was queued for it. With a
    /// cluster's addresses, a node that fails is not the end: the SDK moves
    /// to the next at once (a `Disconnected` with no wait), and only once
    /// every node failed in a row (a `Disconnected` with a wait) does the
    /// command give up, with the last node's reason.
    pub async fn connect(opened: Opened, timeout: Duration) -> Result<Self, CliError> {
        let Opened {
            account,
            mut events,
            meta,
        } = opened;
        account.connect();
        let mut backlog = VecDeque::new();
        let deadline = Instant::now() + timeout;
        let mut last_failure: Option<String> = None;
        loop {
            let event = match tokio::time::timeout_at(deadline, events.next()).await {
                Ok(Some(event)) => event,
                Ok(None) => {
                    return Err(CliError::Other("the account stopped unexpectedly".into()));
                }
                Err(_) => {
                    // Dropping the account aborts its connection task,
                    // which may be waiting on a handshake.
                    drop(account);
                    let mut reason = format!("no connection within {} s", timeout.as_secs());
                    if let Some(last) = last_failure {
                        reason.push_str(&format!(" (a node failed: {last})"));
                    }
                    return Err(CliError::Unreachable {
                        addr: meta.server.clone(),
                        reason,
                    });
                }
            };
            match event {
                // Connected, then the backlog, then CaughtUp: the command
                // starts with everything queued for it in hand.
                Event::Connection(ConnectionState::CaughtUp) => break,
                Event::Connection(ConnectionState::Connecting | ConnectionState::Connected) => {}
                // Another node is tried at once: keep waiting.
                Event::Connection(ConnectionState::Disconnected {
                    reason,
                    retry_in_ms: 0,
                }) => last_failure = Some(reason),
                Event::Connection(ConnectionState::Disconnected { reason, .. }) => {
                    account.disconnect().await;
                    return Err(error::connection_failure(&meta.server, &reason));
                }
                Event::Connection(ConnectionState::Refused { reason }) => {
                    return Err(CliError::DeviceRefused(reason));
                }
                Event::Connection(ConnectionState::Stopped) => {
                    return Err(CliError::Other("the connection was stopped".into()));
                }
                other => backlog.push_back(other),
            }
        }
        Ok(Self {
            account,
            inbox: Inbox {
                events,
                backlog,
                server: meta.server.clone(),
            },
            server: meta.server,
        })
    }

    /// Waits (up to `timeout`) until the outbox is empty, so what a
    /// command queued (announcements, receipts) left before it exits.
    /// Events meanwhile are dropped (what they report is in the store).
    /// `false` when something is still waiting.
    pub async fn drain_outbox(&mut self, timeout: Duration) -> Result<bool, CliError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.account.outbox_len().map_err(error::store)? == 0 {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let step = deadline.min(now + Duration::from_millis(25));
            if let Some(Event::Connection(ConnectionState::Refused { reason })) =
                self.inbox.next_until(step).await?
            {
                return Err(CliError::DeviceRefused(reason));
            }
        }
    }

    /// [`Online::drain_outbox`], telling the user when something is left.
    pub async fn drain_or_warn(&mut self, timeout: Duration) -> Result<(), CliError> {
        if !self.drain_outbox(timeout).await? {
            let left = self.account.outbox_len().map_err(error::store)?;
            eprintln!(
                "warning: {left} message(s) still wait in the outbox; they leave with the next \
                 command that connects"
            );
        }
        Ok(())
    }

    /// Stops the connection.
    pub async fn close(self) {
        self.account.disconnect().await;
    }
}

impl Inbox {
    /// The server's address.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Takes the events kept while connecting.
    pub fn take_backlog(&mut self) -> Vec<Event> {
        self.backlog.drain(..).collect()
    }

    /// The next event: first those kept while connecting.
    pub async fn next(&mut self) -> Option<Event> {
        match self.backlog.pop_front() {
            Some(event) => Some(event),
            None => self.events.next().await,
        }
    }

    /// The next event before `deadline`; `Ok(None)` when it passed.
    pub async fn next_until(&mut self, deadline: Instant) -> Result<Option<Event>, CliError> {
        if let Some(event) = self.backlog.pop_front() {
            return Ok(Some(event));
        }
        match tokio::time::timeout_at(deadline, self.events.next()).await {
            Ok(Some(event)) => Ok(Some(event)),
            Ok(None) => Err(CliError::Other("the account stopped unexpectedly".into())),
            Err(_) => Ok(None),
        }
    }

    /// Waits until the server stored every message in `ids` (an
    /// [`Event::Sent`] each), or one failed. Other events are dropped
    /// (what they report is in the store).
    pub async fn wait_sent(
        &mut self,
        ids: &[MessageId],
        target: &str,
        timeout: Duration,
    ) -> Result<(), CliError> {
        let mut waiting: Vec<MessageId> = ids.to_vec();
        let deadline = Instant::now() + timeout;
        while !waiting.is_empty() {
            match self.next_until(deadline).await? {
                Some(Event::Sent { message_id, .. }) => waiting.retain(|id| *id != message_id),
                Some(Event::SendFailed { message_id, reason }) if waiting.contains(&message_id) => {
                    return Err(error::send_failed(target, &reason));
                }
                Some(Event::Connection(ConnectionState::Refused { reason })) => {
                    return Err(CliError::DeviceRefused(reason));
                }
                Some(Event::SafetyNumberChanged { username, .. }) if username == target => {
                    return Err(CliError::UntrustedIdentity(username));
                }
                Some(_) => {}
                None => {
                    return Err(CliError::Unreachable {
                        addr: self.server.clone(),
                        reason: format!(
                            "the message was not confirmed within {} s; it stays queued and \
                             leaves with the next command that connects",
                            timeout.as_secs()
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A connection failure of a sending command before anything was queued,
/// saying so (nothing waits in the outbox for a later command).
pub fn not_queued(error: CliError) -> CliError {
    match error {
        CliError::Unreachable { addr, reason } => CliError::Unreachable {
            addr,
            reason: format!("{reason}; the message was not sent and not queued"),
        },
        other => other,
    }
}

/// A connection failure of a sending command after its message was
/// queued, saying so (it leaves with the next command that connects).
pub fn queued(error: CliError) -> CliError {
    match error {
        CliError::Unreachable { addr, reason } => CliError::Unreachable {
            addr,
            reason: format!(
                "{reason}; the message is queued and leaves with the next command that connects"
            ),
        },
        other => other,
    }
}

/// Message ids as the CLI shows them: the SDK's text form, 32 lowercase
/// hex digits.
pub fn id_hex(id: &MessageId) -> String {
    id.to_text()
}

/// Parses [`id_hex`].
pub fn parse_id(text: &str) -> Result<MessageId, CliError> {
    MessageId::from_text(text).map_err(|_| {
        CliError::Input(format!(
            "{text:?} is not a message id (32 hex digits, as `recv` prints it)"
        ))
    })
}

/// A conversation as the CLI shows it: the username, or `#name` for a group.
pub fn conversation_label(conversation: &Conversation, group_name: Option<&str>) -> String {
    match conversation {
        Conversation::Direct(username) => username.clone(),
        Conversation::Group(id) => match group_name {
            Some(name) => format!("#{name}"),
            None => format!("#{id}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_a_share_of_the_wait() {
        let total = Duration::from_secs(15);
        assert_eq!(attempt_timeout(1, total), Duration::from_secs(10));
        // A dead node costs the QUIC try plus this: 3 + 4.5 of 15 s.
        assert_eq!(attempt_timeout(2, total), Duration::from_millis(4500));
        assert_eq!(attempt_timeout(3, total), MIN_ATTEMPT);
        assert_eq!(attempt_timeout(2, Duration::from_secs(60)), MAX_ATTEMPT);
        assert_eq!(attempt_timeout(0, Duration::from_secs(1)), MIN_ATTEMPT);
    }

    #[test]
    fn message_ids_round_trip_through_hex() {
        let id = [7u8; 16];
        assert_eq!(parse_id(&id_hex(&id)).unwrap(), id);
        assert!(parse_id("zz").is_err());
        assert!(parse_id(&"ab".repeat(15)).is_err());
    }
}
