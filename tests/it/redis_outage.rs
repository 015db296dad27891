//! The Redis backend when Redis fails: killed mid-traffic (local fallback,
//! then shared limits again after a restart), `on_redis_error = "deny"`,
//! start-up while Redis is down, and the Redis URL kept secret throughout.

use std::time::Duration;

use crate::support::binary::Chatgate;
use crate::support::redis::{RedisServer, spawn_on, wait_degraded, wait_shared};
use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;

async fn status(app: &TestApp) -> StatusCode {
    models(app).await.status()
}

/// `/health/ready`'s status and its `degraded` field.
async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let r = app.get("/health/ready").await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    (status, v["degraded"].clone())
}

async fn state_errors(app: &TestApp) -> f64 {
    metric(&app.metrics().await, "chatgate_state_errors_total", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_falls_back_to_local_limits_then_shares_again_after_restart() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let a = spawn_on(&server, &ip_limit(6), "local").await;
    let b = spawn_on(&server, &ip_limit(6), "local").await;
    wait_shared(&a).await;
    wait_shared(&b).await;
    for _ in 0..2 {
        assert_eq!(status(&a).await, 200);
    }

    // Kill Redis while requests are in flight on A.
    let in_flight = models_in_parallel(&a, 4);
    server.kill();
    let mut statuses = in_flight.join_all().await;
    statuses.push(status(&a).await);
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "every request is answered, none with a 5xx: {statuses:?}"
    );
    wait_degraded(&a).await;

    // B never used its local bucket: it now allows its own full burst, no more.
    for i in 0..6 {
        assert_eq!(status(&b).await, 200, "request {i} inside B's local burst");
    }
    let r = models(&b).await;
    assert_eq!(r.status(), 429, "limited locally while redis is down");
    assert!(r.headers().contains_key("retry-after"));

    assert!(state_errors(&a).await > 0.0);
    assert!(state_errors(&b).await > 0.0);
    assert_eq!(
        readiness(&a).await,
        (StatusCode::OK, Value::from("redis_unreachable"))
    );
    assert_eq!(a.get("/health").await.status(), 200);

    server.restart().await;
    wait_shared(&a).await;
    wait_shared(&b).await;
    assert_eq!(readiness(&b).await, (StatusCode::OK, Value::Null));
    // B's local bucket is spent, so these pass only through the fresh shared one...
    for i in 0..6 {
        assert_eq!(
            status(&b).await,
            200,
            "request {i} on the restored shared bucket"
        );
    }
    // ...and A (at most 5 of 6 local tokens spent) is refused only because
    // B's traffic counts again.
    assert_eq!(status(&a).await, 429, "A sees the shared bucket B emptied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_deny_answers_503_overloaded_while_health_stays_200() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let app = spawn_on(&server, &ip_limit(100), "deny").await;
    wait_shared(&app).await;
    assert_eq!(status(&app).await, 200);

    server.kill();
    for _ in 0..3 {
        let r = models(&app).await;
        assert_eq!(r.status(), 503);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
    }
    let r = app.chat(serde_json::json!({"messages": say("hi")})).await;
    assert_eq!(r.status(), 503, "every /api/v1 route is refused");
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(
        readiness(&app).await,
        (StatusCode::OK, Value::from("redis_unreachable"))
    );
    assert!(state_errors(&app).await > 0.0);

    server.restart().await;
    wait_shared(&app).await;
    assert_eq!(status(&app).await, 200, "served again once redis is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_is_bypassed_then_used_again_when_it_thaws() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let app = spawn_on(&server, &ip_limit(3), "local").await;
    wait_shared(&app).await;
    assert_eq!(status(&app).await, 200);

    // SIGSTOP: the connection stays open but nothing answers, so only the
    // check's own timeout notices.
    server.pause();
    for i in 0..3 {
        assert_eq!(
            status(&app).await,
            200,
            "request {i} inside the local burst"
        );
    }
    assert_eq!(status(&app).await, 429, "local limits apply meanwhile");
    assert!(app.state.limiter.degraded().is_some());
    assert!(state_errors(&app).await > 0.0);

    server.resume();
    wait_shared(&app).await;
    assert_eq!(
        status(&app).await,
        200,
        "the local bucket is spent: only the shared one can admit this"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_with_redis_down_serves_locally_and_shares_once_redis_appears() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    server.kill();
    // App::build neither fails nor waits for Redis.
    let app = spawn_on(&server, &ip_limit(2), "local").await;
    assert_eq!(
        readiness(&app).await,
        (StatusCode::OK, Value::from("redis_unreachable"))
    );
    assert_eq!(status(&app).await, 200);
    assert_eq!(status(&app).await, 200);
    assert_eq!(status(&app).await, 429, "local limits apply meanwhile");

    server.restart().await;
    wait_shared(&app).await;
    assert_eq!(
        status(&app).await,
        200,
        "the fresh shared bucket decides now"
    );
    let mut conn = server.connection().await;
    let exists: bool = ::redis::cmd("EXISTS")
        .arg("chatgate:rl:{ip:127.0.0.1}")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists, "the request was counted in redis");
}

// ---- the Redis URL is a secret ----

const PASSWORD: &str = "s3cretpass";

/// A working directory whose `config/default.toml` is the test base config.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/default.toml"), base_toml()).unwrap();
    dir
}

#[tokio::test]
async fn check_config_and_startup_errors_never_show_the_redis_url() {
    let Some(server) = RedisServer::start_with_password(PASSWORD).await else {
        return;
    };
    let url = server.url();
    let dir = workdir();
    let redis_env = |url: &str| {
        let mut cmd = Chatgate::in_dir(dir.path());
        cmd.env("CHATGATE_STATE__BACKEND", "redis")
            .env("CHATGATE_REDIS_URL", url);
        cmd
    };

    let ok = redis_env(&url)
        .args(["check-config", "--json"])
        .output()
        .await;
    assert_eq!(ok.json()["state"]["redis_url"], "[REDACTED]");
    assert!(!ok.all().contains(PASSWORD), "{ok:?}");

    let bad = format!("http://:{PASSWORD}@127.0.0.1:{}", server.port);
    let refused = redis_env(&bad).arg("check-config").output().await;
    assert!(!refused.success());
    assert!(
        refused.stderr.contains("state.redis_url_env"),
        "{refused:?}"
    );
    assert!(!refused.all().contains(PASSWORD), "{refused:?}");

    let unparsable = format!("redis://:{PASSWORD}@127.0.0.1:notaport");
    let failed = redis_env(&unparsable)
        .env("CHATGATE_SERVER__PORT", "0")
        .output()
        .await;
    assert!(
        !failed.success(),
        "a URL that does not parse stops start-up"
    );
    assert!(failed.stderr.contains("Redis URL"), "{failed:?}");
    assert!(!failed.all().contains(PASSWORD), "{failed:?}");

    // The in-process app authenticates with the password from the URL.
    let app = spawn_on(&server, "", "local").await;
    wait_shared(&app).await;
}

#[tokio::test]
async fn redis_connection_logs_never_show_the_url() {
    let Some(server) = RedisServer::start_with_password(PASSWORD).await else {
        return;
    };
    let dir = workdir();
    let wrong = format!("redis://:wrong-{PASSWORD}@127.0.0.1:{}", server.port);
    let right = server.url();
    for (url, expected) in [
        (wrong.as_str(), "redis unreachable"),
        (right.as_str(), "connected to redis"),
    ] {
        let binary = Chatgate::in_dir(dir.path())
            .env("CHATGATE_STATE__BACKEND", "redis")
            .env("CHATGATE_REDIS_URL", url)
            .env("RUST_LOG", "debug")
            .spawn()
            .await;
        let logged = eventually(Duration::from_secs(10), || {
            binary.output().contains(expected)
        })
        .await;
        let (_, output) = binary.stop().await;
        assert!(logged, "no '{expected}' line:\n{output}");
        assert!(!output.contains(PASSWORD), "{output}");
    }
}

#[tokio::test]
async fn a_tls_redis_url_is_supported_and_an_unreachable_one_degrades_safely() {
    // rediss:// needs the redis crate's TLS support; without it App::build failed.
    let extra = "[state]\nbackend = \"redis\"\n";
    let app = spawn_app_with_env(extra, &[("CHATGATE_REDIS_URL", "rediss://127.0.0.1:1/")]).await;
    let ready: serde_json::Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let degraded = eventually(std::time::Duration::from_secs(5), || {
        app.state.limiter.degraded().is_some()
    })
    .await;
    assert!(degraded, "an unreachable TLS Redis is reported as degraded");
    let r = app.chat(serde_json::json!({"messages": say("hi")})).await;
    assert_eq!(r.status(), 200, "local limits keep serving");
}
