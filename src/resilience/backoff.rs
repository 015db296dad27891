//! How long to wait before the next attempt: exponential backoff with full
//! jitter, and the upstream's `Retry-After` (seconds or HTTP date).

use std::time::{Duration, SystemTime};

/// Full-jitter backoff: uniform in `[0, min(max, initial · 2^retry)]`.
/// `retry` is 0 for the first retry; `unit` is a uniform sample in `[0, 1)`.
pub fn backoff(retry: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let exp = initial.saturating_mul(2u32.saturating_pow(retry.min(31)));
    let ceiling = exp.min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Parses `Retry-After`: delta-seconds or an HTTP date. A date in the past
/// means "now"; anything else unparseable is ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        assert_eq!(
            backoff(0, MS(200), MS(5000), 0.999_999),
            MS(200).mul_f64(0.999_999)
        );
        assert_eq!(backoff(1, MS(200), MS(5000), 1.0), MS(400));
        assert_eq!(backoff(3, MS(200), MS(5000), 1.0), MS(1600));
        assert_eq!(backoff(10, MS(200), MS(5000), 1.0), MS(5000));
        assert_eq!(backoff(200, MS(200), MS(5000), 1.0), MS(5000));
    }

    #[test]
    fn jitter_spans_zero_to_the_ceiling() {
        assert_eq!(backoff(2, MS(200), MS(5000), 0.0), Duration::ZERO);
        assert_eq!(backoff(2, MS(200), MS(5000), 0.5), MS(400));
        for i in 0..1000 {
            let unit = f64::from(i) / 1000.0;
            let d = backoff(4, MS(100), MS(1000), unit);
            assert!(d <= MS(1000), "{d:?}");
        }
        // Out-of-range samples are clamped, never panicking.
        assert_eq!(backoff(0, MS(100), MS(1000), 7.0), MS(100));
        assert_eq!(backoff(0, MS(100), MS(1000), -1.0), Duration::ZERO);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&future).unwrap_or_default();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
        assert_eq!(parse_retry_after(""), None);
    }
}
