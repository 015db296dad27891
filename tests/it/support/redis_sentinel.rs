//! A real Sentinel deployment per test: a master and its replica
//! (`redis-server`, both with `requirepass`/`masterauth`) and three
//! sentinels (`redis-server --sentinel`, with their own `requirepass`), on
//! free ports, with a short `down-after-milliseconds` and `failover-timeout`
//! so a failover takes seconds. Killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "mymaster";
/// Bound on the deployment coming up and on a failover completing.
const LIMIT: Duration = Duration::from_secs(30);

pub struct RedisSentinel {
    /// The data nodes: `[master, replica]` as started.
    pub data_ports: [u16; 2],
    pub sentinel_ports: [u16; 3],
    data_password: String,
    sentinel_password: String,
    /// Data nodes first, then sentinels (same order as the ports).
    children: Vec<Option<Child>>,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisSentinel {
    /// A master with an in-sync replica, watched by three sentinels that
    /// know each other; or `None` (after a loud message) when redis-server
    /// is missing outside CI.
    pub async fn start(data_password: &str, sentinel_password: &str) -> Option<Self> {
        if !installed() {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!("redis-server is not on PATH, and CI must have it");
            }
            eprintln!(
                "\n!!!!! SKIPPED: redis-server not on PATH; sentinel test did not run !!!!!\n"
            );
            return None;
        }
        let mut set = Self {
            data_ports: [free_port(), free_port()],
            sentinel_ports: [free_port(), free_port(), free_port()],
            data_password: data_password.into(),
            sentinel_password: sentinel_password.into(),
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        let [master, replica] = set.data_ports;
        for port in [master, replica] {
            let node_dir = set.dir.path().join(port.to_string());
            std::fs::create_dir(&node_dir).unwrap();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args([
                    "--requirepass",
                    data_password,
                    "--masterauth",
                    data_password,
                ])
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(&node_dir);
            if port == replica {
                cmd.args(["--replicaof", "127.0.0.1", &master.to_string()]);
            }
            set.children.push(Some(quiet(cmd).spawn().unwrap()));
        }
        for (i, port) in set.sentinel_ports.into_iter().enumerate() {
            // A sentinel rewrites its config file: one writable file each.
            let conf = set.dir.path().join(format!("sentinel{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     requirepass {sentinel_password}\n\
                     sentinel sentinel-pass {sentinel_password}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                     sentinel auth-pass {MASTER_NAME} {data_password}\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 3000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = set.dir.path().display(),
                ),
            )
            .unwrap();
            let mut cmd = Command::new("redis-server");
            cmd.arg(&conf).arg("--sentinel");
            set.children.push(Some(quiet(cmd).spawn().unwrap()));
        }
        // Ready when the replica is in sync and every sentinel knows the
        // replica and the two other sentinels (or no quorum could fail over).
        set.until("the replica never synced", || async {
            set.info(replica, "replication")
                .await
                .is_some_and(|i| i.contains("master_link_status:up"))
        })
        .await;
        let view = &set;
        for port in set.sentinel_ports {
            set.until("the sentinels never found each other", || async move {
                view.sentinel_view(port).await.is_some_and(|m| {
                    field(&m, "num-other-sentinels") == Some("2")
                        && field(&m, "num-slaves") == Some("1")
                })
            })
            .await;
        }
        Some(set)
    }

    async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !check().await {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every sentinel as a comma-separated URL list, with its password.
    pub fn sentinel_urls(&self) -> String {
        let urls: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("redis://:{}@127.0.0.1:{p}", self.sentinel_password))
            .collect();
        urls.join(",")
    }

    /// A connection to one data node.
    pub async fn data_node(&self, port: u16) -> Option<::redis::aio::MultiplexedConnection> {
        conn(&format!("redis://:{}@127.0.0.1:{port}", self.data_password)).await
    }

    async fn info(&self, port: u16, section: &str) -> Option<String> {
        let mut c = self.data_node(port).await?;
        ::redis::cmd("INFO")
            .arg(section)
            .query_async(&mut c)
            .await
            .ok()
    }

    /// What one sentinel says about the master (`SENTINEL MASTER`).
    async fn sentinel_view(&self, port: u16) -> Option<Vec<String>> {
        let url = format!("redis://:{}@127.0.0.1:{port}", self.sentinel_password);
        let mut c = conn(&url).await?;
        ::redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(MASTER_NAME)
            .query_async(&mut c)
            .await
            .ok()
    }

    /// The master's port as the first live sentinel reports it.
    pub async fn master(&self) -> Option<u16> {
        for (i, port) in self.sentinel_ports.iter().enumerate() {
            if self.children[2 + i].is_none() {
                continue;
            }
            if let Some(view) = self.sentinel_view(*port).await {
                return field(&view, "port")?.parse().ok();
            }
        }
        None
    }

    /// Kills the master at once (SIGKILL); its port.
    pub fn kill_master(&mut self, master: u16) {
        let i = self.data_ports.iter().position(|p| *p == master).unwrap();
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (bounded) until the sentinels have switched to `to` and it
    /// answers as a master.
    pub async fn wait_switch(&self, to: u16) {
        self.until("the sentinels never switched to the replica", || async {
            self.master().await == Some(to)
                && self
                    .info(to, "replication")
                    .await
                    .is_some_and(|i| i.contains("role:master"))
        })
        .await;
    }
}

/// `redis-server` with its output discarded (the tests read no node logs).
fn quiet(mut cmd: Command) -> Command {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

/// The value after `name` in a flat `[name, value, …]` reply.
fn field<'a>(flat: &'a [String], name: &str) -> Option<&'a str> {
    flat.chunks(2)
        .find(|kv| kv.first().is_some_and(|k| k == name))
        .and_then(|kv| kv.get(1))
        .map(String::as_str)
}

async fn conn(url: &str) -> Option<::redis::aio::MultiplexedConnection> {
    let c = ::redis::Client::open(url).ok()?;
    tokio::time::timeout(Duration::from_secs(1), c.get_multiplexed_async_connection())
        .await
        .ok()?
        .ok()
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The variable the sentinel tests give the master's password in.
pub const MASTER_PASSWORD_ENV: &str = "CHATGATE_REDIS_MASTER_PASSWORD";

/// An app behind `set`'s sentinels (`redis_mode = "sentinel"`, the sentinel
/// URLs as `CHATGATE_REDIS_URL`, the master's password in
/// [`MASTER_PASSWORD_ENV`]); does not wait for the connection.
pub async fn spawn_on_sentinel(set: &RedisSentinel, extra: &str, on_error: &str) -> super::TestApp {
    let urls = set.sentinel_urls();
    let toml = format!(
        "{extra}\n[state]\nbackend = \"redis\"\nredis_mode = \"sentinel\"\n\
         sentinel_master = \"{MASTER_NAME}\"\n\
         sentinel_master_password_env = \"{MASTER_PASSWORD_ENV}\"\n\
         on_redis_error = \"{on_error}\"\n"
    );
    super::spawn_app_with_env(
        &toml,
        &[
            ("CHATGATE_REDIS_URL", urls.as_str()),
            (MASTER_PASSWORD_ENV, set.data_password.as_str()),
        ],
    )
    .await
}

impl RedisSentinel {
    /// Asks a sentinel for a failover with the master alive
    /// (`SENTINEL FAILOVER`): the master is demoted to a replica. Asked
    /// again (bounded) while the sentinel answers `NOGOODSLAVE`: it learns
    /// that the replica is in sync only from its periodic `INFO`.
    pub async fn force_failover(&self) {
        let url = format!(
            "redis://:{}@127.0.0.1:{}",
            self.sentinel_password, self.sentinel_ports[0]
        );
        self.until("no sentinel would start a failover", || async {
            let Some(mut c) = conn(&url).await else {
                return false;
            };
            match ::redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(MASTER_NAME)
                .query_async::<()>(&mut c)
                .await
            {
                Ok(()) => true,
                Err(e) if e.to_string().contains("NOGOODSLAVE") => false,
                Err(e) => panic!("SENTINEL FAILOVER: {e}"),
            }
        })
        .await;
    }
}
