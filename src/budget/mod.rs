//! Budgets: caps on tokens and USD per UTC day and month, for the whole
//! gateway, each client key, and each end user within a key. A request is
//! admitted while every budget that applies is below its cap ([`Budgets::check`],
//! before any provider call); its real spend is added when the answer ends
//! ([`Budgets::record`]), which raises the `alert_at` alerts.
//!
//! Spend lives behind one small trait ([`SpendStore`]): per replica in
//! memory, or shared in Redis (atomic increments on keys that expire after
//! their window). The wall clock is injected, so tests can stand at any date.

mod memory;
mod redis;
mod window;

pub use memory::MemorySpend;
pub use redis::RedisSpend;
pub use window::{Period, Window, period};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::chat::Usage;
use crate::config::{Caps, Config};
use crate::error::ApiError;
use crate::meters::Metrics;

/// The wall clock budgets read (UTC windows need dates, which tokio's
/// paused clock does not move). Tests inject their own.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The real wall clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Usd,
    Tokens,
}

/// One spend counter in a store: its key and how long it must live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// `chatgate:spend:{<scope>}:<window>:<period>:<unit>`: the hash tag puts
    /// every counter of one scope in one Redis Cluster slot, and different
    /// scopes (keys, users) on different masters.
    pub key: Arc<str>,
    pub unit: Unit,
    /// Until the window ends (the store may keep it a little longer).
    pub ttl: Duration,
}

/// The shared state is unreachable and `on_redis_error = "deny"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Where spend is kept.
pub trait SpendStore: Send + Sync {
    /// The spend of each counter (0 for one never written).
    fn read<'a>(&'a self, counters: &'a [Counter]) -> BoxFuture<'a, Result<Vec<f64>, Unavailable>>;
    /// Adds `amounts[i]` to `counters[i]`, atomically per call; the totals after.
    fn add<'a>(
        &'a self,
        counters: &'a [Counter],
        amounts: &'a [f64],
    ) -> BoxFuture<'a, Result<Vec<f64>, Unavailable>>;
}

/// Who a budget belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'a> {
    Gateway,
    Key(&'a str),
    User { key: &'a str, user: &'a str },
}

impl Scope<'_> {
    /// The `scope` label of `chatgate_budget_exceeded_total` and the word in messages.
    fn kind(&self) -> &'static str {
        match self {
            Scope::Gateway => "gateway",
            Scope::Key(_) => "key",
            Scope::User { .. } => "user",
        }
    }

    /// The gauge's `scope` label: bounded (the gateway and configured keys);
    /// end users, being unbounded, get none.
    fn gauge_label(&self) -> Option<String> {
        match self {
            Scope::Gateway => Some("gateway".into()),
            Scope::Key(id) => Some(format!("key:{id}")),
            Scope::User { .. } => None,
        }
    }

    /// The counter key's scope part. An end user id is the client's text:
    /// it is hashed, so keys stay short and no raw id is stored.
    fn key_part(&self) -> String {
        match self {
            Scope::Gateway => "gateway".into(),
            Scope::Key(id) => format!("key:{id}"),
            Scope::User { key, user } => {
                let digest = Sha256::digest(user.as_bytes());
                format!("user:{key}:{}", hex::encode(&digest[..16]))
            }
        }
    }
}

/// One cap of one scope.
#[derive(Debug, Clone, Copy)]
struct Cap {
    window: Window,
    unit: Unit,
    cap: f64,
}

fn caps_of(c: &Caps) -> Vec<Cap> {
    let mut out = Vec::new();
    let usd = [
        (Window::Day, c.usd_per_day),
        (Window::Month, c.usd_per_month),
    ];
    for (window, cap) in usd {
        if let Some(cap) = cap {
            out.push(Cap {
                window,
                unit: Unit::Usd,
                cap: cap.get(),
            });
        }
    }
    let tokens = [
        (Window::Day, c.tokens_per_day),
        (Window::Month, c.tokens_per_month),
    ];
    for (window, cap) in tokens {
        if let Some(cap) = cap {
            out.push(Cap {
                window,
                unit: Unit::Tokens,
                // Token caps beyond 2^53 are not exact as f64; no budget is that large.
                cap: cap.get() as f64,
            });
        }
    }
    out
}

/// One budget that applies to a request, with its counter now.
struct Applied<'a> {
    scope: Scope<'a>,
    cap: Cap,
    counter: Counter,
    remaining: Duration,
}

/// One budget as `GET /admin/v1/budgets` shows it.
#[derive(Debug, Clone)]
pub struct Standing {
    /// `gateway` or `key:<id>`.
    pub scope: String,
    pub window: &'static str,
    pub unit: &'static str,
    pub spent: f64,
    pub cap: f64,
    /// When the window ends.
    pub resets_at: SystemTime,
}

/// Every bounded budget now, and the per-user cap (users are not listed).
#[derive(Debug, Clone)]
pub struct Report {
    pub budgets: Vec<Standing>,
    pub per_user_tokens_per_day: Option<f64>,
}

/// The gateway's budgets and where their spend is kept.
pub struct Budgets {
    gateway: Vec<Cap>,
    keys: HashMap<String, Vec<Cap>>,
    per_user_tokens_per_day: Option<f64>,
    alert_at: Vec<f64>,
    store: Arc<dyn SpendStore>,
    clock: Clock,
    metrics: Metrics,
    /// The bounded scopes' counters of the current UTC day, built once.
    today: Mutex<Option<Arc<Today>>>,
}

/// The counter of each gateway and per-key cap for one UTC day, in the
/// caps' order: built with three `format!`s per counter per request (check
/// and record) they were ≈ 10 % of a priced request's instructions. A day
/// fixes every label (a month changes on a day boundary too) and every
/// window's end. End users' counters, unbounded, are built each time.
struct Today {
    day: u64,
    gateway: Vec<Built>,
    keys: HashMap<String, Vec<Built>>,
}

/// One cap's counter key and when its window ends.
struct Built {
    key: Arc<str>,
    ends: SystemTime,
}

impl Built {
    fn of(scope: Scope<'_>, cap: Cap, now: SystemTime) -> Self {
        let p = period(cap.window, now);
        Self {
            key: counter_key(scope, cap, &p),
            ends: now + p.remaining,
        }
    }
}

/// `chatgate:spend:{<scope>}:<window>:<period>:<unit>`.
fn counter_key(scope: Scope<'_>, cap: Cap, p: &Period) -> Arc<str> {
    let unit = match cap.unit {
        Unit::Usd => "usd",
        Unit::Tokens => "tokens",
    };
    format!(
        "chatgate:spend:{{{}}}:{}:{}:{unit}",
        scope.key_part(),
        cap.window.as_str(),
        p.label
    )
    .into()
}

fn day_of(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400
}

impl Budgets {
    pub fn new(
        config: &Config,
        store: Arc<dyn SpendStore>,
        clock: Clock,
        metrics: Metrics,
    ) -> Self {
        let b = &config.budgets;
        let keys = config
            .auth
            .keys
            .iter()
            .map(|(id, k)| (id.clone(), caps_of(&k.budget)))
            .filter(|(_, caps)| !caps.is_empty())
            .collect();
        Self {
            gateway: caps_of(&b.caps()),
            keys,
            per_user_tokens_per_day: b.per_user_tokens_per_day.map(|n| n.get() as f64),
            alert_at: b.alert_at.iter().map(|f| f.get()).collect(),
            store,
            clock,
            metrics,
            today: Mutex::new(None),
        }
    }

    /// The bounded scopes' counters for `now`'s day (built on its first request).
    fn today(&self, now: SystemTime) -> Arc<Today> {
        let day = day_of(now);
        let mut kept = self
            .today
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(today) = kept.as_ref().filter(|t| t.day == day) {
            return today.clone();
        }
        let today = Arc::new(Today {
            day,
            gateway: self
                .gateway
                .iter()
                .map(|c| Built::of(Scope::Gateway, *c, now))
                .collect(),
            keys: self
                .keys
                .iter()
                .map(|(id, caps)| {
                    let built = caps.iter().map(|c| Built::of(Scope::Key(id), *c, now));
                    (id.clone(), built.collect())
                })
                .collect(),
        });
        *kept = Some(today.clone());
        today
    }

    /// Every budget of this request, at this moment.
    fn applied<'a>(
        &'a self,
        key_id: Option<&'a str>,
        end_user: Option<&'a str>,
    ) -> Vec<Applied<'a>> {
        let now = (self.clock)();
        let today = self.today(now);
        let kept = |scope: Scope<'a>, cap: Cap, built: &Built| {
            let remaining = built.ends.duration_since(now).unwrap_or_default();
            Applied {
                scope,
                cap,
                counter: Counter {
                    key: built.key.clone(),
                    unit: cap.unit,
                    ttl: remaining,
                },
                remaining,
            }
        };
        let mut applied: Vec<Applied<'a>> = self
            .gateway
            .iter()
            .zip(&today.gateway)
            .map(|(cap, built)| kept(Scope::Gateway, *cap, built))
            .collect();
        if let Some(id) = key_id
            && let (Some(caps), Some(built)) = (self.keys.get(id), today.keys.get(id))
        {
            applied.extend(
                caps.iter()
                    .zip(built)
                    .map(|(cap, built)| kept(Scope::Key(id), *cap, built)),
            );
        }
        if let (Some(cap), Some(user)) = (self.per_user_tokens_per_day, end_user) {
            // Without auth there is no key id: users share one anonymous key scope.
            let key = key_id.unwrap_or("-");
            let cap = Cap {
                window: Window::Day,
                unit: Unit::Tokens,
                cap,
            };
            applied.extend(self.counted(vec![(Scope::User { key, user }, cap)], now));
        }
        applied
    }

    /// Each scoped cap with its counter for the window containing `now`.
    fn counted<'a>(&self, scoped: Vec<(Scope<'a>, Cap)>, now: SystemTime) -> Vec<Applied<'a>> {
        scoped
            .into_iter()
            .map(|(scope, cap)| {
                let p = period(cap.window, now);
                let counter = Counter {
                    key: counter_key(scope, cap, &p),
                    unit: cap.unit,
                    ttl: p.remaining,
                };
                Applied {
                    scope,
                    cap,
                    counter,
                    remaining: p.remaining,
                }
            })
            .collect()
    }

    /// Admits the request while every budget that applies is below its cap.
    /// `end_user`: the `user` field (later the JWT subject).
    pub async fn check(
        &self,
        key_id: Option<&str>,
        end_user: Option<&str>,
    ) -> Result<(), ApiError> {
        let applied = self.applied(key_id, end_user);
        if applied.is_empty() {
            return Ok(());
        }
        let counters: Vec<Counter> = applied.iter().map(|a| a.counter.clone()).collect();
        let spent = self
            .store
            .read(&counters)
            .await
            .map_err(|Unavailable| ApiError::Overloaded)?;
        self.show(&applied, &spent);
        let over = applied.iter().zip(&spent).find(|(a, s)| **s >= a.cap.cap);
        match over {
            None => Ok(()),
            Some((a, _)) => {
                self.metrics.budget_exceeded(a.scope.kind());
                Err(ApiError::BudgetExceeded {
                    scope: a.scope.kind(),
                    window: a.cap.window.as_str(),
                    retry_after: a.remaining,
                })
            }
        }
    }

    /// Adds an answer's spend (tokens in and out, and its cost) to every
    /// budget that applies, and raises the alerts it crossed.
    pub async fn record(
        &self,
        key_id: Option<&str>,
        end_user: Option<&str>,
        usage: Usage,
        cost_usd: f64,
    ) {
        let tokens = f64::from(usage.input_tokens) + f64::from(usage.output_tokens);
        let applied: Vec<Applied<'_>> = self
            .applied(key_id, end_user)
            .into_iter()
            .filter(|a| match a.cap.unit {
                Unit::Usd => cost_usd > 0.0,
                Unit::Tokens => tokens > 0.0,
            })
            .collect();
        if applied.is_empty() {
            return;
        }
        let counters: Vec<Counter> = applied.iter().map(|a| a.counter.clone()).collect();
        let amounts: Vec<f64> = applied
            .iter()
            .map(|a| match a.cap.unit {
                Unit::Usd => cost_usd,
                Unit::Tokens => tokens,
            })
            .collect();
        // Under `deny` with Redis down the spend is lost (counted as a state error).
        let Ok(totals) = self.store.add(&counters, &amounts).await else {
            return;
        };
        for ((a, total), amount) in applied.iter().zip(&totals).zip(&amounts) {
            let before = total - amount;
            for fraction in &self.alert_at {
                let at = fraction * a.cap.cap;
                // Spend only grows within a window, and each increment is
                // atomic: exactly one answer crosses each threshold.
                if before < at && *total >= at {
                    tracing::warn!(
                        scope = %a.scope.gauge_label().unwrap_or_else(|| a.scope.kind().into()),
                        window = a.cap.window.as_str(),
                        unit = match a.cap.unit { Unit::Usd => "usd", Unit::Tokens => "tokens" },
                        spent = *total,
                        cap = a.cap.cap,
                        fraction = *fraction,
                        "budget alert"
                    );
                }
            }
        }
        self.show(&applied, &totals);
    }

    /// Every gateway and per-key budget as it stands now (`GET
    /// /admin/v1/budgets`), read through the store. Per-user budgets are
    /// one per end user, unbounded: only their cap is reported.
    pub async fn report(&self) -> Result<Report, Unavailable> {
        let now = (self.clock)();
        let mut scoped: Vec<(Scope<'_>, Cap)> =
            self.gateway.iter().map(|c| (Scope::Gateway, *c)).collect();
        let mut keys: Vec<(&String, &Vec<Cap>)> = self.keys.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (id, caps) in keys {
            scoped.extend(caps.iter().map(|c| (Scope::Key(id), *c)));
        }
        let applied = self.counted(scoped, now);
        let counters: Vec<Counter> = applied.iter().map(|a| a.counter.clone()).collect();
        let spent = self.store.read(&counters).await?;
        let budgets = applied
            .iter()
            .zip(spent)
            .map(|(a, spent)| Standing {
                scope: a
                    .scope
                    .gauge_label()
                    .unwrap_or_else(|| a.scope.kind().into()),
                window: a.cap.window.as_str(),
                unit: match a.cap.unit {
                    Unit::Usd => "usd",
                    Unit::Tokens => "tokens",
                },
                spent,
                cap: a.cap.cap,
                resets_at: now + a.remaining,
            })
            .collect();
        Ok(Report {
            budgets,
            per_user_tokens_per_day: self.per_user_tokens_per_day,
        })
    }

    /// Sets `chatgate_budget_used_ratio` of each bounded scope and window
    /// to its highest ratio (USD or tokens).
    fn show(&self, applied: &[Applied<'_>], spent: &[f64]) {
        let mut ratios: Vec<(String, Window, f64)> = Vec::new();
        for (a, s) in applied.iter().zip(spent) {
            let Some(label) = a.scope.gauge_label() else {
                continue;
            };
            let ratio = s / a.cap.cap;
            match ratios
                .iter_mut()
                .find(|(l, w, _)| *l == label && *w == a.cap.window)
            {
                Some(entry) => entry.2 = entry.2.max(ratio),
                None => ratios.push((label, a.cap.window, ratio)),
            }
        }
        for (label, window, ratio) in ratios {
            self.metrics.budget_used(&label, window.as_str(), ratio);
        }
    }
}
