//! `/remind` delays: one or more `<number><unit>` parts, units `s`, `m`,
//! `h`, `d` (`90s`, `5m`, `1h30m`, `2d`), at least 1 s and at most 366 days.

use std::time::Duration;

/// The longest delay accepted.
pub const MAX_DELAY: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why a delay was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DelayError {
    /// Not `<number><unit>` parts.
    #[error("a delay looks like 90s, 5m, 1h30m or 2d")]
    Malformed,
    /// Zero, or beyond [`MAX_DELAY`].
    #[error("a delay is from 1s to 366d")]
    OutOfRange,
}

/// Parses a delay.
///
/// # Errors
/// [`DelayError`].
pub fn parse_delay(text: &str) -> Result<Duration, DelayError> {
    if text.is_empty() || text.len() > 32 {
        return Err(DelayError::Malformed);
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(digit)))
                .ok_or(DelayError::OutOfRange)?;
            number = Some(n);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(DelayError::Malformed),
        };
        let n = number.take().ok_or(DelayError::Malformed)?;
        total = n
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or(DelayError::OutOfRange)?;
    }
    if number.is_some() {
        return Err(DelayError::Malformed);
    }
    let delay = Duration::from_secs(total);
    if delay.is_zero() || delay > MAX_DELAY {
        return Err(DelayError::OutOfRange);
    }
    Ok(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sums() {
        assert_eq!(parse_delay("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_delay("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_delay("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_delay("2D"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_delay("366d"), Ok(MAX_DELAY));
    }

    #[test]
    fn refusals() {
        for bad in ["", "5", "m", "5x", "1h30", "-5m", "5 m", "٣s"] {
            assert_eq!(parse_delay(bad), Err(DelayError::Malformed), "{bad:?}");
        }
        for bad in [
            "0s",
            "367d",
            "99999999999999999999s",
            "18446744073709551615d",
        ] {
            assert_eq!(parse_delay(bad), Err(DelayError::OutOfRange), "{bad:?}");
        }
        assert_eq!(parse_delay(&"1s".repeat(20)), Err(DelayError::Malformed));
    }
}
