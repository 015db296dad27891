//! Helpers for the observability tests: the interaction-log file, and a FIFO
//! that nobody reads (a writer stuck forever). Metrics: `prometheus`.

use std::path::{Path, PathBuf};

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

impl Drop for StuckFifo {
    /// A writer blocked in `open` sits on a runtime's blocking thread, and a
    /// tokio runtime waits for those when dropped: open a reader (which wakes
    /// the writer), then unlink the pipe so a later `open` creates a plain file.
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        let reader = std::fs::OpenOptions::new()
            .read(true)
            // Non-blocking: opening a FIFO for reading then returns at once.
            .custom_flags(i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap())
            .open(&self.path);
        let _ = std::fs::remove_file(&self.path);
        drop(reader);
    }
}
