//! The internals the workspace's own harnesses reach (feature `testing`):
//! the server's integration tests, the client's and CLI's tests that read
//! the store behind a live server, and the fuzz targets in `fuzz-targets`.
//!
//! Everything here is a re-export of a crate-private item, under the path
//! the item has inside the crate (`testing::storage::sqlite::SqliteStorage`
//! is `crate::storage::sqlite::SqliteStorage`), so a harness reads like the
//! code it tests. Only what a harness uses is listed; a new harness adds
//! its item here rather than making a module public.
//!
//! Not for embedders: nothing here is a stable interface, and a server
//! built for users leaves the feature off. The embedding surface is the
//! crate root (see the crate documentation).

/// The clock and randomness every handler reads: a fixed clock and a
/// seeded generator make a run replayable.
pub mod clock {
    pub use crate::clock::{Clock, ManualClock, SeededRng, SystemRng, system_now_ms};
}

/// The storage trait, its two backends and the rows they exchange.
pub mod storage {
    pub use crate::storage::{
        AttachmentRecord, DeviceListStorage, FetchPage, GroupChange, NewAccount, OneTimeKey,
        OutgoingEnvelope, OwnedSendMeta, PrekeyUpload, SendMeta, SignedKey, SlotRead, Storage,
        StorageError, StoredEnvelope,
    };

    /// The embedded SQLite backend.
    pub mod sqlite {
        pub use crate::storage::sqlite::SqliteStorage;
    }

    /// The PostgreSQL backend.
    pub mod postgres {
        pub use crate::storage::postgres::{PostgresOpenError, PostgresStorage};

        /// The schema version a backend writes and accepts.
        pub mod schema {
            pub use crate::storage::postgres::schema::schema_version;
        }
    }

    /// Operator rows: dashboard accounts, audit log, IP rules, limits,
    /// per-node minutes.
    pub mod admin {
        pub use crate::storage::admin::{
            AdminRole, AdminStorage, AuditEntry, IpRuleRecord, NodeMinuteRecord, RateLimitRecord,
        };
    }

    /// Usage analytics: days, weeks and the counted metrics.
    pub mod analytics {
        pub use crate::storage::analytics::{DAY_MS, Metric, day_of, format_day, week_of};
    }

    /// Suspensions of accounts and devices.
    pub mod suspension {
        pub use crate::storage::suspension::SuspensionTarget;
    }

    /// Group rows.
    pub mod groups {
        pub use crate::storage::groups::GroupRole;
    }
}

/// The wire form of a request failure, to check what a domain error
/// becomes on the wire.
pub mod error {
    pub use crate::error::ApiError;
}

/// The limiter (SPEC.md §12.12), local and shared across nodes.
pub mod limits {
    pub use crate::limits::{EDITABLE, Limits};

    /// Limits shared by the nodes of a cluster through Redis.
    pub mod shared {
        pub use crate::limits::shared::SharedLimits;
    }
}

/// Counters and gauges behind `/metrics`.
pub mod metrics {
    pub use crate::metrics::{Metrics, QUEUED_MAX_AGE, request_kind};
}

/// Accounts and devices (device login: SPEC.md §12.5).
pub mod auth {
    /// Password hashing (argon2id).
    pub mod password {
        pub use crate::auth::password::PasswordHasher;
    }

    /// Device login by challenge signature.
    pub mod devices {
        pub use crate::auth::devices::{Caller, login_message};
    }

    /// What this node remembers of today's logins.
    pub mod login_records {
        pub use crate::auth::login_records::CountedToday;
    }

    /// TOTP enrolment.
    pub mod totp {
        pub use crate::auth::totp::{enrolment, new_secret};
    }
}

/// The request handler of one connection, as the connection task drives it.
pub mod dispatch {
    pub use crate::dispatch::{Reply, RequestHandler, Wake};
}

/// The state a handler runs against.
pub mod state {
    pub use crate::state::ServerState;
}

/// Attachments in flight.
pub mod attachments {
    pub use crate::attachments::UploadsInProgress;
}

/// The attachment HTTP endpoint's parsers.
pub mod attachment_http {
    pub use crate::attachment_http::{if_none_match_names, parse_id};
}

/// Device provisioning slots (SPEC.md §12.14).
pub mod provisioning {
    pub use crate::provisioning::{MAX_SEALED_LEN, SLOT_TTL_MS};
}

/// The QUIC endpoint's certificate.
pub mod endpoint {
    pub use crate::endpoint::fingerprint;
}

/// Who is connected where, and the nodes of a cluster.
pub mod bus {
    pub use crate::bus::BusEvent;

    /// The in-process bus.
    pub mod local {
        pub use crate::bus::local::LocalBus;
    }

    /// The cluster's node table and its snapshots.
    pub mod nodes {
        pub use crate::bus::nodes::{NodeTable, STALE_AFTER_MS, decode, encode};
    }
}

/// The admin listener's parsers.
pub mod admin {
    /// Editable rate limits.
    pub mod rate_limits {
        pub use crate::admin::rate_limits::editable;
    }

    /// Per-second samples and minute rollups.
    pub mod rollups {
        pub use crate::admin::rollups::{
            MAX_RANGE_SECS, MIN_RANGE_SECS, MinuteFold, MinuteRollup, parse_range,
        };
    }
}
