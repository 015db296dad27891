//! The interaction log: one JSON line per sampled chat, with prompt and answer
//! text redacted, written by a background task. A full queue drops the line
//! (counted in `chatgate_interaction_log_dropped_total`); a chat never waits.
//! A file the log creates is readable by its owner only (0600).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::chat::{Message, Usage};
use crate::config::InteractionLogConfig;
use crate::context::Outcome;
use crate::meters::Metrics;
use crate::redact::redact;

/// One chat as it is handed to the writer (unredacted: redaction happens off the request path).
#[derive(Debug)]
pub struct Interaction {
    pub request_id: String,
    pub key_id: Option<Arc<str>>,
    pub model: Arc<str>,
    pub provider: Option<Arc<str>>,
    pub usage: Usage,
    pub latency_ms: u64,
    pub outcome: Outcome,
    pub messages: Arc<[Message]>,
    /// Guard rules with `action = "flag"` that matched.
    pub flags: Vec<Arc<str>>,
    pub answer: String,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    request_id: &'a str,
    key_id: Option<&'a str>,
    model: &'a str,
    provider: Option<&'a str>,
    input_tokens: u32,
    output_tokens: u32,
    latency_ms: u64,
    outcome: &'a str,
    messages: Vec<LineMessage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    flags: Vec<&'a str>,
    answer: String,
}

#[derive(Serialize)]
struct LineMessage {
    role: &'static str,
    content: String,
}

impl crate::jsonl::Line for Interaction {
    /// The JSON line; `at` is when the chat was recorded (not when the writer
    /// got to it, which may be later under load).
    fn line(&self, at: SystemTime) -> Option<String> {
        let line = Line {
            ts: rfc3339_millis(at),
            request_id: &self.request_id,
            key_id: self.key_id.as_deref(),
            model: &self.model,
            provider: self.provider.as_deref(),
            input_tokens: self.usage.input_tokens,
            output_tokens: self.usage.output_tokens,
            latency_ms: self.latency_ms,
            outcome: self.outcome.as_str(),
            messages: self
                .messages
                .iter()
                .map(|m| LineMessage {
                    role: m.role.as_str(),
                    content: redact(&m.text()),
                })
                .collect(),
            flags: self.flags.iter().map(|f| &**f).collect(),
            answer: redact(&self.answer),
        };
        serde_json::to_string(&line).ok()
    }
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct InteractionLog {
    tx: mpsc::Sender<(SystemTime, Interaction)>,
    sample_rate: f64,
    metrics: Metrics,
}

impl InteractionLog {
    /// Starts the writer task. `None` when the log is disabled.
    pub fn start(config: &InteractionLogConfig, metrics: Metrics) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        crate::redact::ensure_rules();
        // Prompts and answers, even redacted, are for the operator only (0600).
        let tx = crate::jsonl::start(&config.path, config.queue_capacity, "interaction log");
        Some(Self {
            tx,
            sample_rate: config.sample_rate,
            metrics,
        })
    }

    /// The same writer with another sample rate (a config reload).
    pub fn with_sample_rate(&self, sample_rate: f64) -> Self {
        Self {
            sample_rate,
            ..self.clone()
        }
    }

    /// Whether this chat is sampled (decided before any work is done for it).
    pub fn sampled(&self) -> bool {
        self.sample_rate >= 1.0 || rand::random::<f64>() < self.sample_rate
    }

    /// Queues a line without waiting; a full queue drops it.
    pub fn record(&self, interaction: Interaction) {
        if self.tx.try_send((SystemTime::now(), interaction)).is_err() {
            self.metrics.interaction_dropped();
        }
    }
}

/// `at` as RFC 3339 UTC with milliseconds (`2024-05-01T12:34:56.789Z`); a
/// time before 1970 (a badly set clock) is written as the epoch.
pub fn rfc3339_millis(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // `date -u -d @951782400` (a leap day in a year divisible by 400).
        assert_eq!(
            rfc3339_millis(at(951_782_400, 5)),
            "2000-02-29T00:00:00.005Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_714_566_896, 789)),
            "2024-05-01T12:34:56.789Z"
        );
        assert_eq!(
            rfc3339_millis(at(4_107_542_399, 999)),
            "2100-02-28T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(at(4_107_542_400, 0)),
            "2100-03-01T00:00:00.000Z"
        );
    }

    #[test]
    fn civil_from_days_agrees_with_counting_days_one_by_one_until_2400() {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..157_000 {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            let month_len = match month {
                2 if leap(year) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > month_len {
                (day, month) = (1, month + 1);
                if month > 12 {
                    (month, year) = (1, year + 1);
                }
            }
        }
    }

    #[test]
    fn a_clock_before_1970_is_written_as_the_epoch() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(rfc3339_millis(before), "1970-01-01T00:00:00.000Z");
    }
}
