//! Shared state on a real Redis Cluster (3 masters, 3 replicas): two
//! replicas share limits, spend and cache in hash-tagged, expiring keys
//! spread over the masters; a master killed under traffic is survived as
//! `on_redis_error` says and shared state returns within 10 s of the
//! replica's promotion; the seed URLs' password never shows.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cost::spend_and_cache_are_shared;
use crate::support::binary::Chatgate;
use crate::support::redis::{
    readiness, shared_again_within_ten_seconds, wait_degraded, wait_shared,
};
use crate::support::redis_cluster::{RedisCluster, spawn_on_cluster};
use crate::support::*;

const PASSWORD: &str = "clu5ter-s3cret";
const IP_BUCKET: &str = "chatgate:rl:{ip:127.0.0.1}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_a_cluster_share_limits_spend_and_cache_in_expiring_keys_spread_over_the_masters()
 {
    let Some(cluster) = RedisCluster::start(None).await else {
        return;
    };
    // Limits: one burst of 3 for both replicas.
    let a = spawn_on_cluster(&cluster, &ip_limit(3), "deny").await;
    let b = spawn_on_cluster(&cluster, &ip_limit(3), "deny").await;
    wait_shared(&a).await;
    wait_shared(&b).await;
    let mut statuses = Vec::new();
    for app in [&a, &b, &a, &b, &a, &b] {
        statuses.push(models(app).await.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429, 429],
        "one shared bucket"
    );
    // The next steps start with a fresh IP bucket.
    let mut holder = cluster
        .node(cluster.master_of(IP_BUCKET).await)
        .await
        .unwrap();
    ::redis::cmd("DEL")
        .arg(IP_BUCKET)
        .query_async::<()>(&mut holder)
        .await
        .unwrap();

    spend_and_cache_are_shared(async |toml: &str, on_error: &str| {
        spawn_on_cluster(&cluster, toml, on_error).await
    })
    .await;

    let by_master = cluster.keys_by_master().await;
    let all: Vec<&(String, i64)> = by_master.iter().flat_map(|(_, keys)| keys).collect();
    let names: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&IP_BUCKET), "{names:?}");
    assert!(
        names
            .iter()
            .any(|k| k.starts_with("chatgate:spend:{key:test}:day:")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|k| k.starts_with("chatgate:cache:")),
        "{names:?}"
    );
    assert!(
        all.iter().all(|(_, ttl)| *ttl > 0),
        "every key expires: {all:?}"
    );
    // The spend counters of one scope share a slot (one script), and the
    // keys of different clients spread over the masters.
    let spend_masters: Vec<u16> = by_master
        .iter()
        .filter(|(_, keys)| keys.iter().any(|(k, _)| k.contains("{key:test}")))
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(spend_masters.len(), 1, "{by_master:?}");
    let holding = by_master
        .iter()
        .filter(|(_, keys)| !keys.is_empty())
        .count();
    assert!(holding >= 2, "keys on one master only: {by_master:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_killed_under_traffic_is_survived_and_shared_again_within_ten_seconds_of_the_promotion()
 {
    let Some(mut cluster) = RedisCluster::start(Some(PASSWORD)).await else {
        return;
    };
    let a = spawn_on_cluster(&cluster, &ip_limit(50), "local").await;
    let b = spawn_on_cluster(&cluster, &ip_limit(50), "local").await;
    let denying = spawn_on_cluster(&cluster, &ip_limit(1000), "deny").await;
    for app in [&a, &b, &denying] {
        wait_shared(app).await;
        assert_eq!(models(app).await.status(), 200);
    }

    // Kill the master holding the shared bucket, with requests in flight.
    let doomed = cluster.master_of(IP_BUCKET).await;
    let in_flight = models_in_parallel(&a, 4);
    cluster.kill(doomed);
    // Before any replica can be promoted (the node timeout has not passed):
    // `deny` refuses with the contract's JSON, `local` serves.
    let r = models(&denying).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "overloaded");
    let mut statuses = in_flight.join_all().await;
    wait_degraded(&a).await;
    assert_eq!(readiness(&a).await, Value::from("redis_unreachable"));
    assert!(metric(&a.metrics().await, "chatgate_state_errors_total", &[]) > 0.0);

    // Live traffic through the outage and the promotion: never a 5xx.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cluster.masters().await.len() < 3 {
        statuses.push(models(&a).await.status());
        statuses.push(models(&b).await.status());
        if tokio::time::Instant::now() >= deadline {
            let mut c = cluster.node(cluster.masters().await[0]).await.unwrap();
            let nodes: String = ::redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut c)
                .await
                .unwrap();
            panic!("no replica was promoted:\n{nodes}");
        }
    }
    cluster.wait_promotion().await;
    let promoted = Instant::now();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "every request answered, none with a 5xx: {statuses:?}"
    );

    shared_again_within_ten_seconds(&[&a, &b, &denying], promoted).await;
    assert_eq!(readiness(&a).await, Value::Null);
    assert_eq!(models(&denying).await.status(), 200, "served again");
    // Shared again: the bucket lives on the promoted master.
    assert_eq!(models(&b).await.status(), 200);
    let holder = cluster.master_of(IP_BUCKET).await;
    assert_ne!(holder, doomed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_seed_urls_and_their_password_never_show_in_check_config_or_logs() {
    let Some(cluster) = RedisCluster::start(Some(PASSWORD)).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/default.toml"), base_toml()).unwrap();
    let seeds = cluster.seeds();
    let env = |cmd: &mut Chatgate| {
        cmd.env("CHATGATE_STATE__BACKEND", "redis")
            .env("CHATGATE_STATE__REDIS_MODE", "cluster")
            .env("CHATGATE_REDIS_URL", &seeds);
    };
    let mut check = Chatgate::in_dir(dir.path());
    env(&mut check);
    let ok = check.args(["check-config", "--json"]).output().await;
    assert_eq!(ok.json()["state"]["redis_url"], "[REDACTED]");
    assert_eq!(ok.json()["state"]["redis_mode"], "cluster");
    assert!(!ok.all().contains(PASSWORD), "{ok:?}");

    let mut bad = Chatgate::in_dir(dir.path());
    env(&mut bad);
    let refused = bad
        .env(
            "CHATGATE_REDIS_URL",
            format!("{seeds},http://:{PASSWORD}@127.0.0.1:1"),
        )
        .arg("check-config")
        .output()
        .await;
    assert!(!refused.success());
    assert!(
        refused.stderr.contains("state.redis_url_env"),
        "{refused:?}"
    );
    assert!(!refused.all().contains(PASSWORD), "{refused:?}");

    let mut serve = Chatgate::in_dir(dir.path());
    env(&mut serve);
    let binary = serve.env("RUST_LOG", "debug").spawn().await;
    let logged = eventually(Duration::from_secs(10), || {
        binary.output().contains("connected to redis")
    })
    .await;
    let (_, output) = binary.stop().await;
    assert!(logged, "no 'connected to redis' line:\n{output}");
    assert!(!output.contains(PASSWORD), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_under_traffic_is_logged_once_down_and_once_back() {
    let Some(mut cluster) = RedisCluster::start(None).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/default.toml"), base_toml()).unwrap();
    let binary = Chatgate::in_dir(dir.path())
        .env("CHATGATE_STATE__BACKEND", "redis")
        .env("CHATGATE_STATE__REDIS_MODE", "cluster")
        .env("CHATGATE_REDIS_URL", cluster.seeds())
        .spawn()
        .await;
    let client = reqwest::Client::new();
    let get = || async {
        client
            .get(binary.url("/api/v1/models"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert!(
        eventually(Duration::from_secs(10), || binary
            .output()
            .contains("connected to redis"))
        .await
    );
    assert!(!get().await.is_server_error());
    cluster.kill(cluster.master_of(IP_BUCKET).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !binary.output().contains("redis reachable again") {
        assert!(!get().await.is_server_error(), "local fallback serves");
        assert!(tokio::time::Instant::now() < deadline, "never shared again");
    }
    // A little more traffic on the restored link, then count.
    for _ in 0..5 {
        assert!(!get().await.is_server_error());
    }
    let (_, output) = binary.stop().await;
    assert_eq!(output.matches("redis unreachable").count(), 1, "{output}");
    assert_eq!(
        output.matches("redis reachable again").count(),
        1,
        "{output}"
    );
}
