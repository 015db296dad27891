//! UTC calendar windows (days and months) from a wall clock, without a date
//! crate: the day number since 1970 and the civil-date conversion of
//! H. Hinnant's `chrono`-compatible algorithms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: u64 = 86_400;

/// A budget's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Day,
    Month,
}

impl Window {
    /// The `window` label and the word in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Month => "month",
        }
    }
}

/// The window containing a moment: its label (`2025-03-31`, `2025-03`) and
/// how long until it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub label: String,
    pub remaining: Duration,
}

/// The `window` period that contains `now`. Times before 1970 count as 1970.
pub fn period(window: Window, now: SystemTime) -> Period {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let day = secs / DAY;
    let (y, m, d) = civil_from_days(day);
    let (label, end) = match window {
        Window::Day => (format!("{y:04}-{m:02}-{d:02}"), (day + 1) * DAY),
        Window::Month => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (format!("{y:04}-{m:02}"), days_from_civil(ny, nm, 1) * DAY)
        }
    };
    let remaining = Duration::from_secs(end).saturating_sub(since);
    Period { label, remaining }
}

/// (year, month 1-12, day 1-31) of day `z` since 1970-01-01.
fn civil_from_days(z: u64) -> (u64, u64, u64) {
    let z = z + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Day number since 1970-01-01 of a civil date (year ≥ 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn days_end_at_utc_midnight_and_months_at_the_first() {
        // 2024-02-29 23:59:30 UTC (a leap day).
        let t = at(1_709_251_170);
        let day = period(Window::Day, t);
        assert_eq!(day.label, "2024-02-29");
        assert_eq!(day.remaining, Duration::from_secs(30));
        let month = period(Window::Month, t);
        assert_eq!(month.label, "2024-02");
        assert_eq!(month.remaining, Duration::from_secs(30));
        // 2024-12-15 00:00:00 UTC: the month ends at 2025-01-01.
        let month = period(Window::Month, at(1_734_220_800));
        assert_eq!(month.label, "2024-12");
        assert_eq!(month.remaining, Duration::from_secs(17 * DAY));
        assert_eq!(period(Window::Day, at(0)).label, "1970-01-01");
    }
}
