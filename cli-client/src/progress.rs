//! A one-line progress bar for file transfers, drawn on standard error
//! only when it is a terminal (scripts and logs stay quiet).

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Width of the bar in characters.
const BAR: u64 = 30;
/// Redraw at most this often.
const REDRAW: Duration = Duration::from_millis(100);

/// Progress of one transfer.
#[derive(Debug)]
pub struct Progress {
    label: String,
    enabled: bool,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    /// A bar labelled `label`, drawn if standard error is a terminal.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_draw: None,
        }
    }

    /// Reports `done` of `total` bytes.
    pub fn update(&mut self, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if done < total
            && self
                .last_draw
                .is_some_and(|t| now.duration_since(t) < REDRAW)
        {
            return;
        }
        self.last_draw = Some(now);
        let line = render(&self.label, done, total, now.duration_since(self.started));
        let mut err = std::io::stderr();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let _ = writeln!(std::io::stderr());
        }
        self.last_draw = None;
    }
}

/// `label [#####.....]  42% 1.2 MiB/2.9 MiB 3.1 MiB/s`.
fn render(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let done = done.min(total);
    let share = |scale: u64| {
        (u128::from(done) * u128::from(scale))
            .checked_div(u128::from(total))
            .map_or(scale, |v| u64::try_from(v).unwrap_or(scale))
    };
    let (filled, percent) = (share(BAR), share(100));
    let bar: String = (0..BAR)
        .map(|i| if i < filled { '#' } else { '.' })
        .collect();
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        format!(" {}/s", bytes(done as f64 / secs))
    } else {
        String::new()
    };
    format!(
        "{label} [{bar}] {percent:>3}% {}/{}{rate}",
        bytes(done as f64),
        bytes(total as f64)
    )
}

/// A byte count for people.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match (unit, UNITS.get(unit)) {
        (0, _) => format!("{n:.0} B"),
        (_, Some(name)) => format!("{value:.1} {name}"),
        (_, None) => format!("{n:.0} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_in_proportion_and_never_overflows() {
        let half = render("f", 50, 100, Duration::ZERO);
        assert!(half.contains(&format!("[{}{}]", "#".repeat(15), ".".repeat(15))));
        assert!(half.contains(" 50%"));
        let over = render("f", 500, 100, Duration::from_secs(1));
        assert!(over.contains(&"#".repeat(30)) && over.contains("100%"));
        assert!(render("f", 0, 0, Duration::ZERO).contains("100%"));
    }

    #[test]
    fn byte_counts_use_binary_units() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
    }
}
