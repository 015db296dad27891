//! The real `chatgate` binary as a process: one-shot commands (bounded, so a
//! command that wrongly keeps serving fails the test instead of hanging it)
//! and a served instance whose port is read from its "chatgate listening" log.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a one-shot command or a start-up may take before the test fails.
const LIMIT: Duration = Duration::from_secs(60);

/// `chatgate` with an empty environment, run in `dir` (where it looks for
/// `config/` and `.env`).
pub fn chatgate(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatgate"));
    cmd.env_clear().current_dir(dir).stdin(Stdio::null());
    cmd
}

/// A copy of the repository's shipped `config/` in a fresh folder, as on a
/// fresh clone (and out of reach of a developer's own `.env`).
pub fn fresh_clone() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    std::fs::create_dir(dir.path().join("config")).unwrap();
    for entry in std::fs::read_dir(shipped).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            dir.path().join("config").join(entry.file_name()),
        )
        .unwrap();
    }
    dir
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// stdout parsed as the JSON that `check-config` prints.
    pub fn json(&self) -> serde_json::Value {
        assert!(self.success(), "command failed: {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = from.read_to_string(&mut out);
        out
    })
}

/// Runs `cmd` to completion (killed and failed past `LIMIT`).
pub fn run(cmd: &mut Command) -> Finished {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chatgate did not exit within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Finished {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// A served `chatgate`, killed when dropped.
pub struct Served {
    child: Child,
    pub addr: SocketAddr,
    /// The log lines before "chatgate listening".
    pub startup: Vec<String>,
}

impl Served {
    /// Starts `cmd` (which must log JSON: `CHATGATE_LOGGING__FORMAT=json`) and
    /// waits for its "chatgate listening" line.
    pub fn start(cmd: &mut Command) -> Served {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        // Keeps draining stdout for the life of the process, so logs never block it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let stderr = drain(child.stderr.take().unwrap());
        let deadline = Instant::now() + LIMIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && v["message"] == "chatgate listening"
                    {
                        let addr = v["addr"].as_str().unwrap().parse().unwrap();
                        return Served {
                            child,
                            addr,
                            startup: seen,
                        };
                    }
                    seen.push(line);
                }
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    let err = stderr.join().unwrap_or_default();
                    panic!("no 'chatgate listening' line ({e}, {status:?}):\n{seen:#?}\n{err}");
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
