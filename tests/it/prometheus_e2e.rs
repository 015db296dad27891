//! A real Prometheus (Debian's `prometheus` package) scraping the real
//! binary every second, with the shipped alert rules loaded (their `for:`
//! shortened in a copy): failures driven through the scriptable upstream
//! make the error-rate and circuit-open alerts pending or firing, and every
//! query of the shipped dashboard returns at least one series.
//!
//! Skipped when `prometheus` is not installed, except in CI (`CI=true`),
//! where its absence fails the test.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::support::binary::{Chatgate, Running};
use crate::support::*;

const METRICS_TOKEN: &str = "prometheus-e2e-scrape-token";
const LIMITED_KEY: &str = "limited-key-for-429s";
/// The admin key: the test reloads the config once (config-reload panels).
const ADMIN_KEY: &str = "prometheus-e2e-admin-key";
/// A key whose token budget the first answer spends (budget panels).
const BUDGET_KEY: &str = "budgeted-key-for-refusals";
/// The whole test, Prometheus start-up included.
const DEADLINE: Duration = Duration::from_secs(90);

/// Dashboard panels whose series cannot exist in this test, by title, with
/// the reason. (None today: every panel's metric is driven below or exists
/// from start-up.)
const PANELS_WITHOUT_SERIES: &[(&str, &str)] = &[];

/// Alerts that the traffic below must make pending or firing.
const ALERTS: &[&str] = &["ChatgateHighErrorRate", "ChatgateCircuitOpen"];

/// The `prometheus` binary, or `None` when the test may be skipped.
fn prometheus_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var("CI").as_deref() == Ok("true") {
        panic!("prometheus is not installed, and CI needs it (.ci/run installs it)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped rules with every `for:` shortened to 1s (a copy; the shipped
/// file is left alone).
fn shortened_rules() -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml"),
    )
    .unwrap();
    let for_line = regex::Regex::new(r"(?m)^(\s+)for:\s*\S+\s*$").unwrap();
    let rules = for_line.replace_all(&shipped, "${1}for: 1s").into_owned();
    assert!(rules.contains("for: 1s"), "no `for:` found in alerts.yml");
    rules
}

/// Every query of the shipped dashboard, by panel title, with Grafana's
/// variables replaced by values that suit a 1 s scrape.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboards/chatgate.json"),
    )
    .unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("<untitled>").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    for (title, expr) in &mut out {
        for (var, value) in [
            ("$__rate_interval", "5s"),
            ("$__interval", "1s"),
            ("$__range", "1h"),
            ("$instance", ".*"),
        ] {
            *expr = expr.replace(var, value);
        }
        assert!(
            !expr.contains('$'),
            "panel {title:?}: a Grafana variable this test does not know: {expr}"
        );
    }
    assert!(!out.is_empty(), "no queries in the dashboard");
    out
}

struct Prometheus {
    url: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(binary: &Path, target: &Running) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("alerts.yml");
        std::fs::write(&rules, shortened_rules()).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: chatgate\n    authorization:\n      credentials: {METRICS_TOKEN}\n    \
                 static_configs:\n      - targets: [\"{addr}\"]\n",
                rules = rules.display(),
                addr = target.addr,
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `data` of an API answer, or `None` while Prometheus is not answering.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .query(query)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let body: Value = r.json().await.ok()?;
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        Some(body["data"].clone())
    }

    async fn series(&self, expr: &str) -> Option<usize> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await?;
        data["result"].as_array().map(Vec::len)
    }

    /// Alert name → state (`pending` or `firing`).
    async fn alerts(&self) -> BTreeMap<String, String> {
        let Some(data) = self.api("/api/v1/alerts", &[]).await else {
            return BTreeMap::new();
        };
        data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                    a["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn serve(good: &Upstream, bad: &Upstream) -> Running {
    let toml = format!(
        "{good}{bad}\n\
         [models.default]\ntargets = [\"good:m-good\"]\n\
         [models.broken]\ntargets = [\"bad:m-bad\"]\n\
         [models.failover]\ntargets = [\"bad:m-bad\", \"good:m-good\"]\n\
         [models.cached]\ntargets = [\"good:m-good\"]\ncache_ttl = \"10m\"\n\
         [models.canaried]\ntargets = [\"good:m-good\"]\n\
         [models.canaried.canary]\ntargets = [\"good:m-canary\"]\npercent = 50\nsticky = \"request\"\n\
         [auth.keys.limited]\nsha256 = \"{limited}\"\nrequests_per_minute = 1\n\
         [auth.keys.budgeted]\nsha256 = \"{budgeted}\"\ntokens_per_day = 1\n\
         [[faq]]\nname = \"hours\"\nphrases = [\"delivery hours\"]\nanswer = \"Mon-Sat.\"\n\
         [[guard.rules]]\nname = \"probe\"\npattern = \"(?i)guard probe\"\non = \"input\"\naction = \"flag\"\n\
         [admin.keys.ops]\nsha256 = \"{admin}\"\n",
        good = Provider::openai("good", good).max_retries(0),
        bad = Provider::openai("bad", bad)
            .max_retries(1)
            .circuit(2, "10m"),
        limited = chatgate::config::sha256_hex(LIMITED_KEY),
        budgeted = chatgate::config::sha256_hex(BUDGET_KEY),
        admin = chatgate::config::sha256_hex(ADMIN_KEY),
    );
    Chatgate::with_config(&toml)
        .envs(upstream_env())
        .env("CHATGATE_METRICS__TOKEN", METRICS_TOKEN)
        .spawn()
        .await
}

/// One round of the traffic every panel and alert needs: answers with
/// tokens, 5xx from a failing provider (retries, then an open circuit), a
/// failover (fallbacks), 429s from a key's limit and from a spent budget,
/// cache misses then hits, a FAQ answer, and a model with a canary at 50 %.
async fn traffic(gw: &Running) {
    let client = reqwest::Client::new();
    let ask = |key: &'static str, model: &'static str, text: &'static str| {
        client
            .post(gw.url("/api/v1/chat"))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": say(text)}))
            .send()
    };
    let chat = |key: &'static str, model: &'static str| ask(key, model, "hello");
    // In order: the second of each pair sees what the first left (a cache
    // entry, a spent budget).
    for (key, model, text) in [
        (KEY, "cached", "hello"),
        (KEY, "cached", "hello"),
        (BUDGET_KEY, "default", "hello"),
        (BUDGET_KEY, "default", "hello"),
        (KEY, "default", "what are your delivery hours?"),
        (KEY, "default", "a guard probe"),
    ] {
        let r = ask(key, model, text).await;
        assert!(r.is_ok(), "{r:?}");
    }
    let reload = client
        .post(gw.url("/admin/v1/reload"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await;
    assert!(
        reload.is_ok_and(|r| r.status() == 200),
        "the config reloads"
    );
    let rounds = [
        chat(KEY, "default"),
        chat(KEY, "default"),
        chat(KEY, "broken"),
        chat(KEY, "broken"),
        chat(KEY, "failover"),
        chat(KEY, "canaried"),
        chat(KEY, "canaried"),
        chat(LIMITED_KEY, "default"),
        chat(LIMITED_KEY, "default"),
    ];
    for r in futures_util::future::join_all(rounds).await {
        assert!(r.is_ok(), "{r:?}");
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_chatgate_fires_its_alerts_and_answers_every_dashboard_query() {
    let Some(binary) = prometheus_binary() else {
        eprintln!("skipped: prometheus is not installed (apt-get install prometheus)");
        return;
    };
    let good = Upstream::openai().await;
    good.push([Reply::text("fine")]);
    let bad = Upstream::openai().await;
    bad.push([Reply::status(500)]);
    let gw = serve(&good, &bad).await;
    let prometheus = Prometheus::start(&binary, &gw).await;

    let mut queries = dashboard_queries();
    queries.retain(|(title, _)| !PANELS_WITHOUT_SERIES.iter().any(|(t, _)| t == title));
    let checked = queries.len();
    let deadline = Instant::now() + DEADLINE;
    let mut alerts;
    loop {
        traffic(&gw).await;
        let mut still = Vec::new();
        for (title, expr) in queries {
            if prometheus.series(&expr).await.unwrap_or(0) == 0 {
                still.push((title, expr));
            }
        }
        queries = still;
        alerts = prometheus.alerts().await;
        let alerting = ALERTS.iter().all(|a| {
            matches!(
                alerts.get(*a).map(String::as_str),
                Some("pending" | "firing")
            )
        });
        if queries.is_empty() && alerting {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {DEADLINE:?}: queries without series {queries:#?}; alerts {alerts:?}\n\
             prometheus log:\n{}",
            prometheus.log()
        );
        // Pacing between rounds of traffic (Prometheus scrapes every second).
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("{checked} dashboard queries answered with series; alerts {alerts:?}");
    // The scrape itself went through the token.
    assert_eq!(
        prometheus.series("up{job=\"chatgate\"} == 1").await,
        Some(1),
        "{alerts:?}"
    );
}
