//! Clock helpers: milliseconds since the epoch for log entries, and a UTC date formatter
//! for log lines and for comparing with providers' dates.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time in UTC (civil from days: Howard Hinnant's
/// algorithm), for log lines and for comparing with providers' dates.
pub fn utc_datetime(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_datetime_is_civil_time() {
        assert_eq!(utc_datetime(0), "1970-01-01T00:00:00");
        assert_eq!(utc_datetime(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(utc_datetime(1_795_445_453), "2026-11-23T14:50:53");
    }
}
