//! Shared state behind Redis Sentinel (a master, its replica, three
//! sentinels, a password on the data nodes and another on the sentinels):
//! two replicas share limits, spend and cache on the master the sentinels
//! name; the master killed under traffic is survived as `on_redis_error`
//! says and shared state returns within 10 s of the switch; the check
//! refuses a sentinel config missing its master name, or sentinel keys in
//! another mode; neither password ever shows.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cost::spend_and_cache_are_shared;
use crate::support::binary::Chatgate;
use crate::support::redis::{
    readiness, shared_again_within_ten_seconds, wait_degraded, wait_shared,
};
use crate::support::redis_sentinel::{
    MASTER_NAME, MASTER_PASSWORD_ENV, RedisSentinel, spawn_on_sentinel,
};
use crate::support::*;

const DATA_PASSWORD: &str = "m4ster-s3cret";
const SENTINEL_PASSWORD: &str = "s3ntinel-s3cret";
const IP_BUCKET: &str = "chatgate:rl:{ip:127.0.0.1}";

async fn del(set: &RedisSentinel, port: u16, key: &str) {
    let mut c = set.data_node(port).await.unwrap();
    ::redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(&mut c)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_sentinel_share_limits_spend_and_cache_on_the_master_it_names() {
    let Some(set) = RedisSentinel::start(DATA_PASSWORD, SENTINEL_PASSWORD).await else {
        return;
    };
    let master = set.master().await.unwrap();
    // Limits: one burst of 3 for both replicas.
    let a = spawn_on_sentinel(&set, &ip_limit(3), "deny").await;
    let b = spawn_on_sentinel(&set, &ip_limit(3), "deny").await;
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
    del(&set, master, IP_BUCKET).await;

    spend_and_cache_are_shared(async |toml: &str, on_error: &str| {
        spawn_on_sentinel(&set, toml, on_error).await
    })
    .await;

    // All of it on the master the sentinels name.
    let mut on_master = set.data_node(master).await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("chatgate:*")
        .query_async(&mut on_master)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.starts_with("chatgate:spend:")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("chatgate:cache:")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_master_killed_under_traffic_is_survived_and_shared_again_within_ten_seconds_of_the_switch()
 {
    let Some(mut set) = RedisSentinel::start(DATA_PASSWORD, SENTINEL_PASSWORD).await else {
        return;
    };
    let a = spawn_on_sentinel(&set, &ip_limit(3), "local").await;
    let b = spawn_on_sentinel(&set, &ip_limit(3), "local").await;
    let denying = spawn_on_sentinel(&set, &ip_limit(1000), "deny").await;
    for app in [&a, &b, &denying] {
        wait_shared(app).await;
        assert!(models(app).await.status().is_success());
    }

    // Kill the master with requests in flight.
    let old = set.master().await.unwrap();
    let new = set.data_ports.into_iter().find(|p| *p != old).unwrap();
    let in_flight = models_in_parallel(&a, 4);
    set.kill_master(old);
    // Before the sentinels can agree it is down (`down-after-milliseconds`):
    // `deny` refuses with the contract's JSON, `local` serves.
    let r = models(&denying).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "overloaded");
    assert!(v["error"]["request_id"].is_string(), "{v}");
    let mut statuses = in_flight.join_all().await;
    wait_degraded(&a).await;
    assert_eq!(readiness(&a).await, Value::from("redis_unreachable"));
    assert!(metric(&a.metrics().await, "chatgate_state_errors_total", &[]) > 0.0);

    // Live traffic through the outage and the switch: never a 5xx.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while set.master().await != Some(new) {
        statuses.push(models(&a).await.status());
        statuses.push(models(&b).await.status());
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sentinels never switched"
        );
    }
    set.wait_switch(new).await;
    let switched = Instant::now();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "every request answered, none with a 5xx: {statuses:?}"
    );

    shared_again_within_ten_seconds(&[&a, &b, &denying], switched).await;
    assert_eq!(readiness(&a).await, Value::Null);
    assert_eq!(models(&denying).await.status(), 200, "served again");

    // Shared again, on the promoted replica: a fresh bucket of 3 taken on
    // A is seen on B.
    del(&set, new, IP_BUCKET).await;
    let mut statuses = Vec::new();
    for app in [&a, &b, &a, &b] {
        statuses.push(models(app).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429], "one shared bucket again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_demoted_to_replica_by_a_sentinel_failover_is_left_for_the_new_master_within_ten_seconds()
 {
    let Some(set) = RedisSentinel::start(DATA_PASSWORD, SENTINEL_PASSWORD).await else {
        return;
    };
    let a = spawn_on_sentinel(&set, &ip_limit(3), "local").await;
    let b = spawn_on_sentinel(&set, &ip_limit(3), "local").await;
    wait_shared(&a).await;
    wait_shared(&b).await;
    assert_eq!(models(&a).await.status(), 200);
    let old = set.master().await.unwrap();
    let new = set.data_ports.into_iter().find(|p| *p != old).unwrap();

    // The old master stays up as a replica: the link learns of the switch
    // from a connection drop or a READONLY reply, and asks the sentinels.
    set.force_failover().await;
    set.wait_switch(new).await;
    let switched = Instant::now();
    loop {
        del(&set, new, IP_BUCKET).await;
        let mut statuses = Vec::new();
        for app in [&a, &b, &a, &b] {
            statuses.push(models(app).await.status().as_u16());
        }
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 429),
            "no 5xx while switching: {statuses:?}"
        );
        if statuses == [200, 200, 200, 429] {
            break;
        }
        assert!(
            switched.elapsed() < Duration::from_secs(10),
            "not shared on the new master 10 s after the switch: {statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_logged_once_down_and_once_back_and_neither_password_ever_shows() {
    let Some(mut set) = RedisSentinel::start(DATA_PASSWORD, SENTINEL_PASSWORD).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/default.toml"), base_toml()).unwrap();
    let urls = set.sentinel_urls();
    let env = |cmd: &mut Chatgate| {
        cmd.env("CHATGATE_STATE__BACKEND", "redis")
            .env("CHATGATE_STATE__REDIS_MODE", "sentinel")
            .env("CHATGATE_STATE__SENTINEL_MASTER", MASTER_NAME)
            .env(
                "CHATGATE_STATE__SENTINEL_MASTER_PASSWORD_ENV",
                MASTER_PASSWORD_ENV,
            )
            .env(MASTER_PASSWORD_ENV, DATA_PASSWORD)
            .env("CHATGATE_REDIS_URL", &urls);
    };
    let leaks = |text: &str| text.contains(DATA_PASSWORD) || text.contains(SENTINEL_PASSWORD);

    let mut check = Chatgate::in_dir(dir.path());
    env(&mut check);
    let ok = check.args(["check-config", "--json"]).output().await;
    assert_eq!(ok.json()["state"]["redis_url"], "[REDACTED]", "{ok:?}");
    assert_eq!(ok.json()["state"]["sentinel_master_password"], "[REDACTED]");
    assert_eq!(ok.json()["state"]["redis_mode"], "sentinel");
    assert!(!leaks(&ok.all()), "{ok:?}");
    let mut print = Chatgate::in_dir(dir.path());
    env(&mut print);
    let printed = print.arg("check-config").output().await;
    assert!(printed.success(), "{printed:?}");
    assert!(!leaks(&printed.all()), "{printed:?}");

    let mut bad = Chatgate::in_dir(dir.path());
    env(&mut bad);
    let refused = bad
        .env(
            "CHATGATE_REDIS_URL",
            format!("{urls},rediss://:{SENTINEL_PASSWORD}@127.0.0.1:1"),
        )
        .arg("check-config")
        .output()
        .await;
    assert!(!refused.success());
    assert!(
        refused.stderr.contains("state.redis_url_env"),
        "{refused:?}"
    );
    assert!(!leaks(&refused.all()), "{refused:?}");

    let mut serve = Chatgate::in_dir(dir.path());
    env(&mut serve);
    let binary = serve.env("RUST_LOG", "debug").spawn().await;
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
        .await,
        "{}",
        binary.output()
    );
    assert!(!get().await.is_server_error());
    set.kill_master(set.master().await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !binary.output().contains("redis reachable again") {
        assert!(!get().await.is_server_error(), "local fallback serves");
        assert!(tokio::time::Instant::now() < deadline, "never shared again");
    }
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
    assert!(!leaks(&output), "{output}");
}

fn problem_paths(toml: &str, env: &[(&str, &str)]) -> Vec<String> {
    match load_config(toml, env) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.into_iter().map(|p| p.path).collect(),
    }
}

#[test]
fn the_check_needs_a_master_name_in_sentinel_mode_and_refuses_sentinel_keys_elsewhere() {
    let url = [("CHATGATE_REDIS_URL", "redis://127.0.0.1:26379")];
    let sentinel = "[state]\nbackend = \"redis\"\nredis_mode = \"sentinel\"\n";
    assert_eq!(problem_paths(sentinel, &url), ["state.sentinel_master"]);
    let named = format!("{sentinel}sentinel_master = \"{MASTER_NAME}\"\n");
    assert!(problem_paths(&named, &url).is_empty());
    assert_eq!(
        problem_paths(
            &format!("{named}sentinel_master_password_env = \"NOT_SET_ANYWHERE\"\n"),
            &url
        ),
        ["state.sentinel_master_password_env"]
    );
    assert_eq!(
        problem_paths(
            &named,
            &[(
                "CHATGATE_REDIS_URL",
                "redis://127.0.0.1:26379,rediss://127.0.0.1:26380"
            )]
        ),
        ["state.redis_url_env"],
        "TLS for some sentinels only"
    );
    let elsewhere = "[state]\nbackend = \"redis\"\nsentinel_master = \"mymaster\"\n\
                     sentinel_master_password_env = \"X\"\n";
    assert_eq!(
        problem_paths(elsewhere, &url),
        [
            "state.sentinel_master",
            "state.sentinel_master_password_env"
        ]
    );
}
