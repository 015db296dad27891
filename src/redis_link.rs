//! The one Redis connection of a replica, shared by everything that keeps
//! state in Redis (rate limits, budget spend, the response cache), and its
//! health: one background task reconnects (a fresh connection, so a
//! half-dead socket is never reused) while Redis is unreachable, and each
//! transition is logged once, not per request.
//!
//! While Redis is down no request waits for it: [`RedisLink::run`] answers
//! `None` at once and each user takes its fallback (`on_redis_error`).
//!
//! The Redis is one server (`redis_mode = "standalone"`) or a Redis Cluster
//! (`"cluster"`, the crate's own async cluster connection: slot map,
//! `MOVED`/`ASK`, multi-slot `MGET` split); callers get a [`StateConn`]
//! either way and never see the difference.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{OnRedisError, RedisMode};
use crate::meters::Metrics;

/// How long one call may wait for Redis before the fallback answers.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Bound on one connection attempt (TCP connect and handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between connection attempts while Redis is unreachable: how soon
/// shared state returns after Redis does.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

/// Redirections and reconnects one cluster call may take (a `MOVED` after a
/// promotion, an `ASK` during a slot migration) within [`CALL_TIMEOUT`].
const CLUSTER_RETRIES: u32 = 3;

/// Where the connection comes from.
enum Source {
    Standalone(redis::Client),
    Cluster(ClusterClient),
}

/// The shared connection handed to callers: one server or a cluster, both
/// cheap to clone (a handle to one multiplexed connection per node).
#[derive(Clone)]
pub enum StateConn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for StateConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The connection and its health, shared with the reconnect task.
pub struct RedisLink {
    source: Source,
    /// `Some` while Redis is usable; the number tells connections apart, so a
    /// late failure on a replaced connection cannot mark the new one down.
    conn: RwLock<Option<(u64, StateConn)>>,
    /// Connections made so far (the next one's number).
    generation: AtomicU64,
    on_error: OnRedisError,
    metrics: Metrics,
}

impl RedisLink {
    /// Starts connecting in the background (never blocks start-up); until
    /// connected, [`run`](Self::run) answers `None`. Fails only on a malformed
    /// URL. `url`: one URL (standalone) or comma-separated seed nodes (cluster).
    pub fn start(
        url: &SecretString,
        mode: RedisMode,
        on_error: OnRedisError,
        metrics: Metrics,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let source = match mode {
            RedisMode::Standalone => Source::Standalone(redis::Client::open(url.expose_secret())?),
            RedisMode::Cluster => {
                let seeds: Vec<&str> = url.expose_secret().split(',').map(str::trim).collect();
                // No retry waits beyond a few redirections: the call timeout
                // bounds each call, and the reconnect task paces the rest.
                Source::Cluster(
                    ClusterClientBuilder::new(seeds)
                        .retries(CLUSTER_RETRIES)
                        .min_retry_wait(10)
                        .max_retry_wait(50)
                        .connection_timeout(CONNECT_TIMEOUT)
                        .response_timeout(CALL_TIMEOUT)
                        .build()?,
                )
            }
        };
        let link = Arc::new(Self {
            source,
            conn: RwLock::new(None),
            generation: AtomicU64::new(0),
            on_error,
            metrics,
        });
        tokio::spawn(reconnect(Arc::downgrade(&link), false));
        Ok(link)
    }

    pub fn on_error(&self) -> OnRedisError {
        self.on_error
    }

    /// Whether the shared state is a Redis Cluster (keys of one script must
    /// then share a hash slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self.source, Source::Cluster(_))
    }

    /// Whether Redis is usable now.
    pub fn is_up(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<(u64, StateConn)> {
        self.conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs one call on the shared connection, bounded by [`CALL_TIMEOUT`].
    /// `None` when Redis is down or the call failed (then the link is marked
    /// down, the failure counted, and reconnecting starts).
    pub async fn run<T, F, Fut>(self: &Arc<Self>, call: F) -> Option<T>
    where
        F: FnOnce(StateConn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let (number, conn) = self.current()?;
        let why = match tokio::time::timeout(CALL_TIMEOUT, call(conn)).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => reason(&e),
            Err(_) => "timeout",
        };
        self.metrics.state_error();
        if self.fail(number, why) {
            tokio::spawn(reconnect(Arc::downgrade(self), true));
        }
        None
    }

    /// One attempt: connect and authenticate, then a PING (standalone) or a
    /// check that the cluster serves every slot and every master answers (a
    /// failed master not yet replaced keeps the link down instead of flapping).
    async fn connect(&self) -> Result<StateConn, &'static str> {
        let attempt = async {
            match &self.source {
                Source::Standalone(client) => {
                    // No retries inside the manager: the reconnect task paces attempts.
                    let config = ConnectionManagerConfig::new()
                        .set_number_of_retries(0)
                        .set_connection_timeout(CONNECT_TIMEOUT)
                        .set_response_timeout(CALL_TIMEOUT);
                    let mut conn =
                        ConnectionManager::new_with_config(client.clone(), config).await?;
                    redis::cmd("PING").query_async::<()>(&mut conn).await?;
                    Ok::<_, redis::RedisError>(Ok(StateConn::Standalone(conn)))
                }
                Source::Cluster(client) => {
                    let mut conn = client.get_async_connection().await?;
                    let info = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async::<String>(&mut conn)
                        .await?;
                    if !info.contains("cluster_state:ok") {
                        return Ok(Err("cluster not serving every slot"));
                    }
                    // Every master the slot map names must answer: a dead one
                    // not yet marked failed keeps the link down, rather than
                    // up for the other slots and down again on the next call.
                    let slots = redis::cmd("CLUSTER")
                        .arg("SLOTS")
                        .query_async::<Vec<Vec<Value>>>(&mut conn)
                        .await?;
                    for (host, port) in slots.iter().filter_map(|range| slot_master(range)) {
                        let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host,
                            port,
                        });
                        conn.route_command(&redis::cmd("PING"), at).await?;
                    }
                    Ok(Ok(StateConn::Cluster(conn)))
                }
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT + CALL_TIMEOUT, attempt).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(reason(&e)),
            Err(_) => Err("timeout"),
        }
    }

    fn install(&self, conn: StateConn) {
        // Only the one reconnect task installs, so the count cannot race.
        let number = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.conn.write().unwrap_or_else(PoisonError::into_inner) = Some((number, conn));
        if number == 1 {
            tracing::info!("connected to redis: shared rate limits, budgets and cache active");
        } else {
            tracing::info!("redis reachable again: shared rate limits, budgets and cache restored");
        }
    }

    /// Marks connection `number` failed. True when this call took it down
    /// (then the caller starts reconnecting); later failures change nothing.
    fn fail(&self, number: u64, why: &'static str) -> bool {
        let mut conn = self.conn.write().unwrap_or_else(PoisonError::into_inner);
        if conn.as_ref().is_none_or(|(n, _)| *n != number) {
            return false;
        }
        *conn = None;
        drop(conn);
        self.warn_down(why);
        true
    }

    fn warn_down(&self, why: &'static str) {
        let fallback = match self.on_error {
            OnRedisError::Local => "per-replica limits and budgets",
            OnRedisError::Deny => "refusing /api/v1 requests",
        };
        // The URL is a secret: name the failure, never the server.
        tracing::warn!(
            reason = why,
            fallback,
            "redis unreachable: shared rate limits, budgets and cache unavailable"
        );
    }
}

/// Connects until it succeeds, for as long as the link lives. After a
/// failure the first attempt waits too, so a Redis that keeps failing (an
/// error reply on every call, say) costs one warning per interval, not per
/// request.
async fn reconnect(link: Weak<RedisLink>, wait_first: bool) {
    let mut warned = false;
    if wait_first {
        tokio::time::sleep(RECONNECT_INTERVAL).await;
    }
    loop {
        let Some(l) = link.upgrade() else { return };
        match l.connect().await {
            Ok(conn) => return l.install(conn),
            Err(why) => {
                l.metrics.state_error();
                // At start-up nothing has been logged yet; after a failure
                // `fail` already said it.
                let never_connected = l.generation.load(Ordering::Relaxed) == 0;
                if never_connected && !warned {
                    l.warn_down(why);
                    warned = true;
                }
            }
        }
        drop(l);
        tokio::time::sleep(RECONNECT_INTERVAL).await;
    }
}

/// The master's address in one `CLUSTER SLOTS` entry
/// (`[start, end, [host, port, id, …], replicas…]`).
fn slot_master(range: &[Value]) -> Option<(String, u16)> {
    let Some(Value::Array(node)) = range.get(2) else {
        return None;
    };
    let host = match node.first()? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
        Value::SimpleString(s) => s.clone(),
        _ => return None,
    };
    let Value::Int(port) = node.get(1)? else {
        return None;
    };
    Some((host, u16::try_from(*port).ok()?))
}

/// What went wrong, in words that never contain the URL.
fn reason(e: &redis::RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connection_refusal() {
        "connection refused"
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection lost"
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        "authentication failed"
    } else {
        "error reply"
    }
}
