//! The real `chatgate` binary as a child process, the one harness for it: a
//! builder (args, an environment of our choosing, files in its working dir)
//! that either serves ([`Chatgate::spawn`]: the address from its "chatgate
//! listening" line, its log lines, signals, exit status, killed on drop) or
//! runs a one-shot command ([`Chatgate::output`]: status, stdout, stderr;
//! stdin is closed, as no command reads it).
//!
//! Children are driven by a small runtime of the harness's own, so the same
//! code serves async tests and the blocking shims in `cli`, and pipes keep
//! draining whatever the test's own runtime is doing.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

pub use rustix::process::Signal;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long the binary may take to start listening, to exit, or to finish a
/// one-shot command: generous, so only a hang fails a test.
const LIMIT: Duration = Duration::from_secs(60);

/// Log lines kept per process; later ones are counted, not kept (a trace-level
/// run writes a few thousand).
const MAX_LINES: usize = 100_000;

/// The harness's runtime: one worker, alive for the whole test binary.
static HARNESS: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("chatgate-harness")
        .enable_all()
        .build()
        .unwrap()
});

/// Runs `fut` on the harness's runtime and awaits it (panics pass through).
async fn on_harness<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    match HARNESS.spawn(fut).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Blocks on `fut` from sync code or from inside any runtime.
pub(crate) fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let task = HARNESS.spawn(fut);
    HARNESS.spawn(async move {
        let _ = tx.send(task.await);
    });
    match rx.recv().unwrap() {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// How to run `chatgate`: like `std::process::Command`, but with an empty
/// environment and stdin, in a working dir that holds its files.
#[derive(Clone)]
pub struct Chatgate {
    cwd: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// What a one-shot reads on standard input (empty when unset).
    stdin: Option<Vec<u8>>,
    /// A temporary working dir we created, kept until every process started
    /// from it is gone.
    owned: Option<Arc<tempfile::TempDir>>,
}

impl Chatgate {
    /// Runs in `cwd` (where it looks for `config/` and `.env`).
    pub fn in_dir(cwd: &Path) -> Self {
        Self {
            cwd: cwd.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            owned: None,
        }
    }

    /// Runs in a fresh empty temporary dir (out of reach of a checkout's `.env`).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Self::in_dir(dir.path());
        cmd.owned = Some(Arc::new(dir));
        cmd
    }

    /// Serves the test base config with `extra` TOML over it (as the
    /// development profile), JSON logs at `info`, from a fresh temporary dir.
    pub fn with_config(extra: &str) -> Self {
        let mut cmd = Self::new();
        let dir = cmd.dir().to_owned();
        cmd.file("default.toml", &super::base_toml())
            .file("development.toml", extra)
            .env("APP_ENV", "development")
            .env("CHATGATE_CONFIG_DIR", dir)
            .env("CHATGATE_LOGGING__FORMAT", "json")
            .env("CHATGATE_LOGGING__LEVEL", "info");
        cmd
    }

    /// The working dir.
    pub fn dir(&self) -> &Path {
        &self.cwd
    }

    /// Writes `text` to `path` (relative: under the working dir; parent dirs made).
    pub fn file(&mut self, path: impl AsRef<Path>, text: &str) -> &mut Self {
        let path = self.cwd.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
        self
    }

    pub fn arg(&mut self, arg: impl Into<OsString>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(&mut self, args: I) -> &mut Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Feeds `input` to a one-shot's standard input (`output()` only).
    pub fn stdin(&mut self, input: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(input.into());
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatgate"));
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Starts it and waits for its "chatgate listening" line (JSON or pretty logs).
    pub async fn spawn(&mut self) -> Running {
        let spec = self.clone();
        on_harness(async move { spec.start().await }).await
    }

    /// Runs it to completion (killed, and the test failed, past a generous limit).
    pub async fn output(&mut self) -> Output {
        let spec = self.clone();
        on_harness(async move { spec.finish().await }).await
    }

    async fn start(self) -> Running {
        let mut child = self.command().spawn().expect("start chatgate");
        let log = Log::default();
        let readers = vec![
            log.capture(child.stdout.take().unwrap()),
            log.capture(child.stderr.take().unwrap()),
        ];
        let mut readers = readers;
        let mut lines = log.changes.subscribe();
        let found = tokio::time::timeout(LIMIT, async {
            loop {
                if let Some(addr) = listening_addr(&log.text()) {
                    return Some(addr);
                }
                tokio::select! {
                    _ = lines.changed() => {}
                    _ = child.wait() => {
                        // Exited without listening: keep its last words for the panic.
                        for reader in readers.drain(..) {
                            let _ = reader.await;
                        }
                        return None;
                    }
                }
            }
        })
        .await;
        match found {
            Ok(Some(addr)) => Running {
                addr,
                child,
                log,
                readers,
                _dir: self.owned,
            },
            _ => {
                let _ = child.start_kill();
                let status = child.wait().await;
                panic!(
                    "chatgate did not start listening ({status:?}); output:\n{}",
                    log.text()
                );
            }
        }
    }

    async fn finish(self) -> Output {
        let mut cmd = self.command();
        if self.stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("start chatgate");
        if let (Some(input), Some(mut pipe)) = (self.stdin.clone(), child.stdin.take()) {
            use tokio::io::AsyncWriteExt;
            pipe.write_all(&input).await.unwrap();
            // Dropping the pipe closes it: the command sees end of input.
        }
        let stdout = read_all(child.stdout.take().unwrap());
        let stderr = read_all(child.stderr.take().unwrap());
        let status = match tokio::time::timeout(LIMIT, child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = child.kill().await;
                panic!("chatgate {:?} did not exit within {LIMIT:?}", self.args);
            }
        };
        Output {
            code: status.code(),
            stdout: stdout.await.unwrap(),
            stderr: stderr.await.unwrap(),
        }
    }
}

impl Default for Chatgate {
    fn default() -> Self {
        Self::new()
    }
}

fn read_all(mut pipe: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// What a finished one-shot command left behind.
#[derive(Debug)]
pub struct Output {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// stdout parsed as the JSON that `check-config` prints.
    pub fn json(&self) -> Value {
        assert!(self.success(), "command failed: {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// The stdout and stderr lines of one process, in arrival order (per pipe).
#[derive(Clone, Default)]
struct Log {
    lines: Arc<Mutex<Lines>>,
    /// Bumped on every line; closed when both pipes are.
    changes: Arc<watch::Sender<usize>>,
}

#[derive(Default)]
struct Lines {
    kept: VecDeque<String>,
    dropped: usize,
}

impl Log {
    fn capture(&self, pipe: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                {
                    let mut all = log.lines.lock().unwrap();
                    if all.kept.len() < MAX_LINES {
                        all.kept.push_back(line);
                    } else {
                        all.dropped += 1;
                    }
                }
                log.changes.send_modify(|n| *n += 1);
            }
        })
    }

    fn lines(&self) -> Vec<String> {
        let all = self.lines.lock().unwrap();
        assert_eq!(all.dropped, 0, "more than {MAX_LINES} log lines");
        all.kept.iter().cloned().collect()
    }

    fn text(&self) -> String {
        self.lines().join("\n")
    }
}

/// A served `chatgate`, killed when dropped.
pub struct Running {
    pub addr: SocketAddr,
    child: Child,
    log: Log,
    readers: Vec<JoinHandle<()>>,
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every stdout and stderr line so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lines()
    }

    /// Everything it printed so far, for assertions and failure messages.
    pub fn output(&self) -> String {
        self.log.text()
    }

    /// The JSON log events so far (other lines skipped).
    pub fn events(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first log event whose message is `message`.
    pub fn event(&self, message: &str) -> Option<Value> {
        self.events().into_iter().find(|e| e["message"] == message)
    }

    pub fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("chatgate is running");
        let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the exit (the test fails past a generous limit), and for the
    /// last lines it wrote.
    pub async fn wait(&mut self) -> ExitStatus {
        let status = match tokio::time::timeout(LIMIT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("chatgate did not exit in {LIMIT:?}:\n{}", self.output()),
        };
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(LIMIT, reader).await;
        }
        status
    }

    /// SIGTERM, then [`Running::wait`]: the status and all it printed.
    pub async fn stop(mut self) -> (ExitStatus, String) {
        self.signal(Signal::TERM);
        let status = self.wait().await;
        (status, self.output())
    }
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
fn listening_addr(output: &str) -> Option<SocketAddr> {
    output
        .lines()
        .filter(|l| l.contains("chatgate listening"))
        .find_map(|line| {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                return v["addr"].as_str()?.parse().ok();
            }
            let line = strip_ansi(line);
            let rest = &line[line.find("addr=")? + "addr=".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
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
