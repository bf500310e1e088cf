//! How both backends map between the protocol's integers and the signed
//! 64-bit integers SQLite and PostgreSQL store, written once so that an
//! out-of-range value means the same thing on either backend.
//!
//! Not owned here: reading or writing rows (sqlite.rs, postgres.rs).

/// A network id (u64) as stored (i64). An id above `i64::MAX` cannot
/// exist, so it maps to -1, which matches no row.
pub(crate) fn sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(-1)
}

/// A stored id or counter (i64) as a network one; a negative value, which
/// neither backend writes, reads as 0.
pub(crate) fn net_id(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

/// A time in milliseconds as stored; beyond `i64::MAX` it saturates (the
/// far future).
pub(crate) fn sql_time(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A stored count as a `u32`, saturating.
pub(crate) fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_map_to_no_row_zero_or_saturate() {
        assert_eq!(sql_id(u64::MAX), -1);
        assert_eq!(sql_id(7), 7);
        assert_eq!(net_id(-5), 0);
        assert_eq!(sql_time(u64::MAX), i64::MAX);
        assert_eq!(count(i64::MAX), u32::MAX);
        assert_eq!(count(3), 3);
    }
}
