//! The real `chatgate` binary as a child process: a clean environment of our
//! choosing, stdout and stderr captured, the port read from its
//! "chatgate listening" log line, stopped with SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long the binary may take to start listening, or to exit after SIGTERM.
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

pub struct Binary {
    child: Child,
    pub addr: SocketAddr,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// Appends every line of `pipe` to `output`.
fn capture(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    output: Arc<Mutex<String>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut out = output.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    })
}

/// Removes ANSI colour sequences (pretty logs on a terminal-like writer).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `addr` of a "chatgate listening" line, JSON or pretty (`addr=IP:PORT`).
pub fn listening_addr(output: &str) -> Option<SocketAddr> {
    output
        .lines()
        .filter(|l| l.contains("chatgate listening"))
        .find_map(|line| {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                return v["addr"].as_str()?.parse().ok();
            }
            let line = strip_ansi(line);
            let rest = &line[line.find("addr=")? + "addr=".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
}

impl Binary {
    /// Starts `chatgate` (serve) in `workdir` with exactly `env` (nothing
    /// inherited), and waits until it listens.
    pub async fn start(workdir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatgate"))
            .current_dir(workdir)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chatgate");
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            capture(child.stdout.take().unwrap(), output.clone()),
            capture(child.stderr.take().unwrap(), output.clone()),
        ];
        let mut addr = None;
        let started = super::eventually(PROCESS_LIMIT, || {
            addr = listening_addr(&output.lock().unwrap());
            addr.is_some()
        })
        .await;
        let text = output.lock().unwrap().clone();
        assert!(started, "chatgate did not start listening; output:\n{text}");
        Self {
            child,
            addr: addr.unwrap(),
            output,
            readers,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything written to stdout and stderr so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends SIGTERM, waits for the exit, and returns the status and all output.
    pub async fn stop(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().expect("chatgate is running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(PROCESS_LIMIT, self.child.wait())
            .await
            .expect("chatgate exits after SIGTERM")
            .expect("wait for chatgate");
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(PROCESS_LIMIT, reader).await;
        }
        (status, self.output())
    }
}
