//! A real 3-master/3-replica Redis Cluster per test: six `redis-server`
//! processes on free ports (cluster mode, a short node timeout so a
//! failover takes seconds), joined with `redis-cli --cluster create`, with
//! `requirepass`/`masterauth` when a password is given. Killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `cluster-node-timeout`: how long a silent master takes to be failed over.
pub const NODE_TIMEOUT_MS: u64 = 1500;
/// Bound on creating the cluster and on a failover completing.
const LIMIT: Duration = Duration::from_secs(30);

pub struct RedisCluster {
    pub ports: Vec<u16>,
    password: Option<String>,
    children: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn installed() -> bool {
    ["redis-server", "redis-cli"].iter().all(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl RedisCluster {
    /// A fresh cluster serving every slot, or `None` (after a loud message)
    /// when redis-server/redis-cli are missing outside CI.
    pub async fn start(password: Option<&str>) -> Option<Self> {
        if !installed() {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!("redis-server/redis-cli are not on PATH, and CI must have them");
            }
            eprintln!(
                "\n!!!!! SKIPPED: redis-server/redis-cli not on PATH; cluster test did not run !!!!!\n"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Self {
            ports: (0..6).map(|_| free_port()).collect(),
            password: password.map(str::to_owned),
            children: Vec::new(),
            _dir: dir,
        };
        for (i, port) in cluster.ports.clone().into_iter().enumerate() {
            let node_dir = cluster._dir.path().join(format!("n{i}"));
            std::fs::create_dir(&node_dir).unwrap();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
                // A replica syncs at once and may always take over: the
                // failover tests kill a master seconds after creation.
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--cluster-replica-validity-factor", "0"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(p) = password {
                cmd.args(["--requirepass", p, "--masterauth", p]);
            }
            cluster.children.push(Some(cmd.spawn().unwrap()));
        }
        for port in cluster.ports.clone() {
            cluster
                .until(|| async move { cluster_ping(port, password).await })
                .await;
        }
        let mut create = Command::new("redis-cli");
        if let Some(p) = password {
            create.args(["-a", p, "--no-auth-warning"]);
        }
        create.args(["--cluster", "create"]);
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {out:?}"
        );
        for port in cluster.ports.clone() {
            cluster
                .until(|| async move {
                    info(port, password)
                        .await
                        .is_some_and(|i| i.contains("cluster_state:ok"))
                })
                .await;
        }
        // Every replica in sync before a test may kill its master.
        cluster
            .until(|| async {
                let mut synced = 0;
                for port in &cluster.ports {
                    if let Some(mut c) = conn(*port, password).await {
                        let info: String = ::redis::cmd("INFO")
                            .arg("replication")
                            .query_async(&mut c)
                            .await
                            .unwrap_or_default();
                        if info.contains("master_link_status:up") {
                            synced += 1;
                        }
                    }
                }
                synced == 3
            })
            .await;
        Some(cluster)
    }

    async fn until<F, Fut>(&self, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the redis cluster never got there"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url_of(&self, port: u16) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{port}"),
            None => format!("redis://127.0.0.1:{port}"),
        }
    }

    /// Every node as a comma-separated seed list.
    pub fn seeds(&self) -> String {
        let urls: Vec<String> = self.ports.iter().map(|p| self.url_of(*p)).collect();
        urls.join(",")
    }

    /// The live nodes that are masters now.
    pub async fn masters(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for (i, port) in self.ports.iter().enumerate() {
            if self.children[i].is_none() {
                continue;
            }
            if let Some(mut c) = self.node(*port).await {
                let role: Result<Vec<::redis::Value>, _> =
                    ::redis::cmd("ROLE").query_async(&mut c).await;
                if let Ok(role) = role
                    && role.first() == Some(&::redis::Value::BulkString(b"master".to_vec()))
                {
                    out.push(*port);
                }
            }
        }
        out
    }

    /// A plain connection to one node (no redirections followed).
    pub async fn node(&self, port: u16) -> Option<::redis::aio::MultiplexedConnection> {
        ::redis::Client::open(self.url_of(port))
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()
    }

    /// `chatgate:*` keys each live master holds, with their TTLs in ms.
    pub async fn keys_by_master(&self) -> Vec<(u16, Vec<(String, i64)>)> {
        let mut out = Vec::new();
        for port in self.masters().await {
            let mut c = self.node(port).await.unwrap();
            let keys: Vec<String> = ::redis::cmd("KEYS")
                .arg("chatgate:*")
                .query_async(&mut c)
                .await
                .unwrap();
            let mut with_ttl = Vec::new();
            for k in keys {
                let ttl: i64 = ::redis::cmd("PTTL")
                    .arg(&k)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                with_ttl.push((k, ttl));
            }
            out.push((port, with_ttl));
        }
        out
    }

    /// The master holding `key` now.
    pub async fn master_of(&self, key: &str) -> u16 {
        for (port, keys) in self.keys_by_master().await {
            if keys.iter().any(|(k, _)| k == key) {
                return port;
            }
        }
        panic!("no master holds {key}");
    }

    /// Kills one node at once (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).unwrap();
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (bounded) until three live masters serve every slot again: the
    /// dead master's replica has been promoted.
    pub async fn wait_promotion(&self) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            if self.masters().await.len() == 3 {
                let live = self.masters().await[0];
                if info(live, self.password.as_deref())
                    .await
                    .is_some_and(|i| i.contains("cluster_state:ok"))
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no replica was promoted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn conn(port: u16, password: Option<&str>) -> Option<::redis::aio::MultiplexedConnection> {
    let url = match password {
        Some(p) => format!("redis://:{p}@127.0.0.1:{port}"),
        None => format!("redis://127.0.0.1:{port}"),
    };
    let c = ::redis::Client::open(url).ok()?;
    tokio::time::timeout(Duration::from_secs(1), c.get_multiplexed_async_connection())
        .await
        .ok()?
        .ok()
}

async fn cluster_ping(port: u16, password: Option<&str>) -> bool {
    let Some(mut c) = conn(port, password).await else {
        return false;
    };
    ::redis::cmd("PING")
        .query_async::<String>(&mut c)
        .await
        .is_ok()
}

async fn info(port: u16, password: Option<&str>) -> Option<String> {
    let mut c = conn(port, password).await?;
    ::redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut c)
        .await
        .ok()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An app on `cluster` (`redis_mode = "cluster"`, the seeds injected as
/// `CHATGATE_REDIS_URL`); does not wait for the connection.
pub async fn spawn_on_cluster(
    cluster: &RedisCluster,
    extra: &str,
    on_error: &str,
) -> super::TestApp {
    let seeds = cluster.seeds();
    let toml = format!(
        "{extra}\n[state]\nbackend = \"redis\"\nredis_mode = \"cluster\"\non_redis_error = \"{on_error}\"\n"
    );
    super::spawn_app_with_env(&toml, &[("CHATGATE_REDIS_URL", seeds.as_str())]).await
}
