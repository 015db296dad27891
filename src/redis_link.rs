//! The one Redis connection of a replica, shared by everything that keeps
//! state in Redis (rate limits, budget spend, the response cache), and its
//! health: one background task reconnects (a fresh connection, so a
//! half-dead socket is never reused) while Redis is unreachable, and each
//! transition is logged once, not per request.
//!
//! While Redis is down no request waits for it: [`RedisLink::run`] answers
//! `None` at once and each user takes its fallback (`on_redis_error`).
//!
//! The Redis is one server (`redis_mode = "standalone"`), a Redis Cluster
//! (`"cluster"`, the crate's own async cluster connection: slot map,
//! `MOVED`/`ASK`, multi-slot `MGET` split) or the master a set of sentinels
//! names (`"sentinel"`, the crate's sentinel client: each connection
//! attempt asks the sentinels afresh, so reconnecting after a failure is
//! following a failover); callers get a [`StateConn`] either way and never
//! see the difference.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisConnectionInfo,
    RedisFuture, TlsMode, Value,
};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{OnRedisError, RedisMode, StateConfig};
use crate::meters::Metrics;

/// How long one call may wait for Redis before the fallback answers.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Bound on one connection attempt (TCP connect and handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between connection attempts while Redis is unreachable: how soon
/// shared state returns after Redis does.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

/// How often, while connected, the sentinels are asked whether the master
/// is still the one connected: a failover forced with the old master alive
/// leaves it serving as a master until the sentinels demote it (their next
/// `INFO` poll, up to 10 s), and shared state must move sooner than that.
const SENTINEL_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Redirections and reconnects one cluster call may take (a `MOVED` after a
/// promotion, an `ASK` during a slot migration) within [`CALL_TIMEOUT`].
const CLUSTER_RETRIES: u32 = 3;

/// Where the connection comes from.
enum Source {
    Standalone(redis::Client),
    Cluster(ClusterClient),
    Sentinel(SentinelSource),
}

/// The sentinels to ask, and how to reach the master they name.
struct SentinelSource {
    /// One entry per sentinel URL, each with that sentinel's own password.
    sentinels: Vec<ConnectionInfo>,
    /// `sentinel_master`: the monitored master's name.
    master: String,
    /// The master's password and TLS mode (the sentinels' own, by URL scheme).
    node: SentinelNodeConnectionInfo,
    /// Failed attempts so far: each starts with the next sentinel, so one
    /// that hangs (rather than refusing) cannot eat every attempt's time.
    failures: AtomicUsize,
    /// `host:port` of the master connected now (set by the reconnect task,
    /// read by the watch; never held across an await).
    connected: Mutex<Option<String>>,
}

/// The shared connection handed to callers: one server, a cluster, or the
/// sentinels' master, all cheap to clone (a handle to one multiplexed
/// connection per node).
#[derive(Clone)]
pub enum StateConn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    /// A plain multiplexed connection to the master the sentinels named: it
    /// never reconnects by itself, as a manager would, to an address that
    /// may be a replica by now; the link replaces it by asking the
    /// sentinels again.
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for StateConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
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
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
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
    /// URL. `url`: one URL (standalone), comma-separated seed nodes
    /// (cluster) or comma-separated sentinels (sentinel); the rest of
    /// `state` says which, and names the sentinels' master.
    pub fn start(
        url: &SecretString,
        state: &StateConfig,
        metrics: Metrics,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let source = match state.redis_mode {
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
            RedisMode::Sentinel => Source::Sentinel(SentinelSource::new(url, state)?),
        };
        let link = Arc::new(Self {
            source,
            conn: RwLock::new(None),
            generation: AtomicU64::new(0),
            on_error: state.on_redis_error,
            metrics,
        });
        tokio::spawn(reconnect(Arc::downgrade(&link), false));
        if matches!(link.source, Source::Sentinel(_)) {
            tokio::spawn(watch_sentinels(Arc::downgrade(&link)));
        }
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
                Source::Sentinel(source) => {
                    // Fresh sentinel connections per attempt, like the
                    // fresh data connection: nothing half-dead is reused.
                    let mut sentinels = source.sentinels.clone();
                    let turn = source.failures.load(Ordering::Relaxed) % sentinels.len().max(1);
                    sentinels.rotate_left(turn);
                    // The crate asks each sentinel in turn for the master,
                    // skips one flagged down, and checks with ROLE that the
                    // server it names is a master now.
                    let master = Sentinel::build(sentinels)?
                        .async_master_for(&source.master, Some(&source.node))
                        .await?;
                    let addr = master.get_connection_info().addr.to_string();
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(CONNECT_TIMEOUT)
                        .set_response_timeout(CALL_TIMEOUT);
                    let mut conn = master
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    redis::cmd("PING").query_async::<()>(&mut conn).await?;
                    *source
                        .connected
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(addr);
                    Ok(Ok(StateConn::Sentinel(conn)))
                }
            }
        };
        let result = match tokio::time::timeout(CONNECT_TIMEOUT + CALL_TIMEOUT, attempt).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(reason(&e)),
            Err(_) => Err("timeout"),
        };
        if let (Err(_), Source::Sentinel(source)) = (&result, &self.source) {
            source.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
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

impl SentinelSource {
    /// The sentinel URLs parsed (each keeps its own userinfo), and the
    /// master reached with `sentinel_master_password` over TLS when the
    /// sentinels are (the check made the URLs agree).
    fn new(url: &SecretString, state: &StateConfig) -> Result<Self, redis::RedisError> {
        let sentinels = url
            .expose_secret()
            .split(',')
            .map(|u| u.trim().into_connection_info())
            .collect::<Result<Vec<_>, _>>()?;
        let tls = url.expose_secret().trim_start().starts_with("rediss://");
        let node = SentinelNodeConnectionInfo {
            tls_mode: tls.then_some(TlsMode::Secure),
            redis_connection_info: Some(RedisConnectionInfo {
                password: state
                    .sentinel_master_password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .filter(|p| !p.is_empty()),
                ..RedisConnectionInfo::default()
            }),
        };
        Ok(Self {
            sentinels,
            master: state.sentinel_master.clone().unwrap_or_default(),
            node,
            failures: AtomicUsize::new(0),
            connected: Mutex::new(None),
        })
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

/// While the link lives: every [`SENTINEL_WATCH_INTERVAL`], while connected,
/// asks the sentinels for the master; when they name another one than the
/// connected, the connection is dropped and reconnecting follows them (a
/// dead master is noticed sooner, by the calls that fail on it). Sentinels
/// that cannot answer change nothing: they are not the data path.
async fn watch_sentinels(link: Weak<RedisLink>) {
    // One sentinel client for the watch: it keeps its sentinel connections.
    let mut sentinel = {
        let Some(l) = link.upgrade() else { return };
        let Source::Sentinel(source) = &l.source else {
            return;
        };
        match Sentinel::build(source.sentinels.clone()) {
            Ok(s) => s,
            Err(_) => return,
        }
    };
    loop {
        tokio::time::sleep(SENTINEL_WATCH_INTERVAL).await;
        let Some(l) = link.upgrade() else { return };
        let Source::Sentinel(source) = &l.source else {
            return;
        };
        let Some((number, _)) = l.current() else {
            continue;
        };
        let named = tokio::time::timeout(
            CONNECT_TIMEOUT + CALL_TIMEOUT,
            sentinel.async_master_for(&source.master, Some(&source.node)),
        )
        .await;
        let Ok(Ok(named)) = named else { continue };
        let named = named.get_connection_info().addr.to_string();
        let moved = source
            .connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|connected| *connected != named);
        if moved && l.fail(number, "the sentinels switched the master") {
            l.metrics.state_error();
            tokio::spawn(reconnect(Arc::downgrade(&l), false));
        }
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
    } else if e.kind() == redis::ErrorKind::ReadOnly {
        // A master demoted to replica (a sentinel failover): reconnecting
        // asks the sentinels for the new one.
        "read-only replica"
    } else if e.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel {
        "no sentinel names a usable master"
    } else {
        "error reply"
    }
}
