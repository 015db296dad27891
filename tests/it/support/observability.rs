//! Helpers for the observability tests: exact Prometheus series lookup, the
//! interaction-log file, and a FIFO that nobody reads (a writer stuck forever).

use std::path::{Path, PathBuf};

/// The value of the series `name` whose label set is exactly `labels`
/// (in any order); `None` when no such line exists.
pub fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut have: Vec<String> = rest
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        have.sort();
        (n == name && have == want).then(|| value.parse().ok())?
    })
}

/// Every value of label `label` on any sample line of `name` (and its
/// `_bucket`/`_sum`/`_count` lines).
pub fn label_values(text: &str, name: &str, label: &str) -> Vec<String> {
    let prefix = format!("{label}=\"");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| {
            let start = l.find(&prefix)? + prefix.len();
            let end = l[start..].find('"')? + start;
            Some(l[start..end].to_owned())
        })
        .collect()
}

/// The complete lines of the interaction log, parsed (none when the file
/// does not exist yet; a line still being written is left out).
pub fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// TOML enabling the interaction log at `path`.
pub fn interaction_log_toml(path: &Path, sample_rate: f64, queue_capacity: usize) -> String {
    format!(
        "[interaction_log]\nenabled = true\npath = \"{}\"\nsample_rate = {sample_rate:?}\nqueue_capacity = {queue_capacity}\n",
        path.display()
    )
}

/// A named pipe in a temporary directory that nobody reads: opening it for
/// writing blocks until a reader appears, so a writer pointed at it never
/// writes a line. Dropping it frees such a writer (see `Drop`).
pub struct StuckFifo {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl StuckFifo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("interactions.fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mkfifo failed");
        Self { path, _dir: dir }
    }
}

/// `O_NONBLOCK`: opening a FIFO for reading then returns at once.
#[cfg(target_os = "linux")]
const O_NONBLOCK: i32 = 0o4000;
#[cfg(not(target_os = "linux"))]
const O_NONBLOCK: i32 = 0x0004; // macOS and the BSDs

impl Drop for StuckFifo {
    /// A writer blocked in `open` sits on a runtime's blocking thread, and a
    /// tokio runtime waits for those when dropped: open a reader (which wakes
    /// the writer), then unlink the pipe so a later `open` creates a plain file.
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&self.path);
        let _ = std::fs::remove_file(&self.path);
        drop(reader);
    }
}
