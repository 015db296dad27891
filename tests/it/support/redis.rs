//! A real `redis-server` per test, on a free port, killed on drop; it can be
//! killed and restarted on the same port to test outages. Without the binary
//! tests are skipped loudly (or fail, when `CI` is set: CI installs it).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a started server may take to answer PING.
const START_LIMIT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl RedisServer {
    /// A fresh server, or `None` (after a loud message) when `redis-server`
    /// is not installed and this is not CI.
    pub async fn start() -> Option<Self> {
        Self::start_inner(None).await
    }

    /// A server that requires `password` (`requirepass`).
    pub async fn start_with_password(password: &str) -> Option<Self> {
        Self::start_inner(Some(password.to_owned())).await
    }

    async fn start_inner(password: Option<String>) -> Option<Self> {
        if !installed() {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!("redis-server is not on PATH, and CI must have it (.ci/run installs it)");
            }
            // Straight to stderr: the test harness captures `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!! SKIPPED: redis-server is not on PATH; this Redis test did not run. \
                 Install it (apt-get install redis-server) to run it. !!!!!\n"
            );
            return None;
        }
        // A port freed a moment ago can be taken by someone else: try a few.
        for _ in 0..3 {
            let mut server = Self {
                port: free_port(),
                password: password.clone(),
                child: None,
                dir: tempfile::tempdir().unwrap(),
            };
            if server.launch().await {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of three free ports");
    }

    /// `redis://[:password@]127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// A client for inspecting the server's keys.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Kills the server at once (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(Signal::STOP);
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::CONT);
    }

    fn signal(&self, signal: Signal) {
        let child = self.child.as_ref().expect("redis-server is running");
        rustix::process::kill_process(rustix::process::Pid::from_child(child), signal).unwrap();
    }

    /// Starts a new, empty server on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch().await,
            "redis-server did not restart on port {}",
            self.port
        );
    }

    /// Starts the child and waits until it answers PING; false if it exits first.
    async fn launch(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        loop {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if self.answers_ping().await {
                self.child = Some(child);
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True when the port answers PING (`-NOAUTH` counts: it is up).
    async fn answers_ping(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH")
            }
            _ => false,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `[state]` for the Redis backend with `on_redis_error = on_error`.
pub fn state_toml(on_error: &str) -> String {
    format!("\n[state]\nbackend = \"redis\"\non_redis_error = \"{on_error}\"\n")
}

/// An app on `server` (the URL injected as `CHATGATE_REDIS_URL`); does not
/// wait for the connection.
pub async fn spawn_on(server: &RedisServer, extra: &str, on_error: &str) -> super::TestApp {
    let url = server.url();
    let toml = format!("{extra}{}", state_toml(on_error));
    super::spawn_app_with_env(&toml, &[("CHATGATE_REDIS_URL", url.as_str())]).await
}

/// Waits (bounded) until `app`'s limiter uses the shared state.
pub async fn wait_shared(app: &super::TestApp) {
    assert!(
        super::eventually(Duration::from_secs(10), || app
            .state
            .limiter
            .degraded()
            .is_none())
        .await,
        "the app never connected to redis"
    );
}

/// Waits until every app uses the shared state again, and requires that
/// within 10 s of `since` (a failover's promotion or switch).
pub async fn shared_again_within_ten_seconds(apps: &[&super::TestApp], since: std::time::Instant) {
    for app in apps {
        wait_shared(app).await;
    }
    let back = since.elapsed();
    assert!(
        back < Duration::from_secs(10),
        "shared again after {back:?}"
    );
}

/// What `/health/ready` says is degraded (`null` when nothing is); it
/// answers 200 either way.
pub async fn readiness(app: &super::TestApp) -> serde_json::Value {
    let r = app.get("/health/ready").await;
    assert_eq!(r.status(), 200);
    r.json::<serde_json::Value>().await.unwrap()["degraded"].clone()
}

/// Waits (bounded) until `app`'s limiter has noticed that Redis is gone.
pub async fn wait_degraded(app: &super::TestApp) {
    assert!(
        super::eventually(Duration::from_secs(10), || app
            .state
            .limiter
            .degraded()
            .is_some())
        .await,
        "the app never noticed that redis is down"
    );
}
