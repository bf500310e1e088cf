//! A request refused by a rate limit or quota (SPEC.md §12.12): what was
//! limited and when to retry. Not a close: the connection stays open.

/// Too many of `what`; a retry after `retry_after_ms` may succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many {what}; retry later")]
pub struct RateLimited {
    /// What was counted, in the client's words ("sends", "login attempts").
    pub what: &'static str,
    /// Milliseconds until the bucket has a token again.
    pub retry_after_ms: u64,
}
