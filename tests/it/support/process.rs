//! The real `chatgate` binary as a child process: config files in a temp
//! `CHATGATE_CONFIG_DIR`, JSON logs read from its stdout (the listening
//! address among them), signals sent with `kill`.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// How long the binary may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(30);

pub struct Gateway {
    pub addr: SocketAddr,
    child: Child,
    /// Every stdout line (JSON log events) and stderr line, in order.
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts the binary with `extra` TOML over `super::base_toml()` (as the
    /// development profile) and only the variables in `env` (plus the ones
    /// that point it at the config and turn on JSON logs).
    pub async fn start(extra: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default.toml"), super::base_toml()).unwrap();
        std::fs::write(dir.path().join("development.toml"), extra).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_chatgate"));
        command
            .env_clear()
            .env("APP_ENV", "development")
            .env("CHATGATE_CONFIG_DIR", dir.path())
            .env("CHATGATE_LOGGING__FORMAT", "json")
            .env("CHATGATE_LOGGING__LEVEL", "info")
            .envs(env.iter().copied())
            // No `.env` of the checkout is picked up from a temp working dir.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), lines.clone());
        collect(child.stderr.take().unwrap(), lines.clone());
        let mut gateway = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            lines,
            _dir: dir,
        };
        let mut addr = None;
        super::eventually(START_LIMIT, || {
            addr = gateway
                .event("chatgate listening")
                .and_then(|e| e["addr"].as_str()?.parse().ok());
            addr.is_some()
        })
        .await;
        match addr {
            Some(addr) => gateway.addr = addr,
            None => panic!("chatgate did not start:\n{}", gateway.output()),
        }
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Sends a signal by name (`TERM`, `INT`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits at most `limit` for the process to exit.
    pub async fn exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("chatgate did not exit in {limit:?}:\n{}", self.output()),
        }
    }

    /// The JSON log events so far (other lines skipped).
    pub fn events(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first log event whose message is `message`.
    pub fn event(&self, message: &str) -> Option<Value> {
        self.events().into_iter().find(|e| e["message"] == message)
    }

    /// Everything it printed, for failure messages.
    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

fn collect(from: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap().push(line);
        }
    });
}
