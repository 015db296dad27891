//! Cost control on the Redis backend: replicas share one budget and one
//! cache, spend and cache keys expire, and a Redis outage under traffic
//! never turns into a 5xx with `on_redis_error = "local"`.

use crate::cost::{OTHER_KEY, cached_toml, chat_as, hello, priced};
use crate::support::redis::{RedisServer, spawn_on, wait_degraded, wait_shared};
use crate::support::*;

async fn keys_with_ttl(server: &RedisServer, pattern: &str) -> Vec<i64> {
    let mut conn = server.connection().await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut ttls = Vec::new();
    for k in keys {
        let ttl: i64 = ::redis::cmd("TTL")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap();
        ttls.push(ttl);
    }
    ttls
}

#[tokio::test]
async fn two_replicas_share_one_budget_in_expiring_redis_keys() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]); // 12 tokens
    let toml = priced(&up, "").replace(
        "[auth.keys.other]",
        "[auth.keys.test]\ntokens_per_day = 10\nusd_per_day = 1.0\n\n[auth.keys.other]",
    );
    let a = spawn_on(&server, &toml, "deny").await;
    let b = spawn_on(&server, &toml, "deny").await;
    wait_shared(&a).await;
    wait_shared(&b).await;
    assert_eq!(a.chat(hello()).await.status(), 200);
    let (_, e) = error_of(b.chat(hello()).await, 429, "budget_exceeded").await;
    assert!(e["message"].as_str().unwrap().contains("key"));
    assert_eq!(chat_as(&b, OTHER_KEY, hello()).await.status(), 200);
    assert_eq!(up.calls(), 2);
    let ttls = keys_with_ttl(&server, "chatgate:spend:*").await;
    assert_eq!(ttls.len(), 2, "tokens and USD of the key's day");
    // A day's window plus the hour of grace, at most.
    assert!(
        ttls.iter().all(|t| (1..=86_400 + 3600).contains(t)),
        "{ttls:?}"
    );
    let mut conn = server.connection().await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("chatgate:spend:*:usd")
        .query_async(&mut conn)
        .await
        .unwrap();
    let usd: f64 = ::redis::cmd("GET")
        .arg(&keys[0])
        .query_async::<String>(&mut conn)
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!((usd - 0.000019).abs() < 1e-12, "{usd}");
}

#[tokio::test]
async fn two_replicas_share_one_cache_with_the_model_ttl() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let up = Upstream::openai().await;
    up.push([Reply::text("shared words")]);
    let toml = cached_toml(&up, "");
    let a = spawn_on(&server, &toml, "local").await;
    let b = spawn_on(&server, &toml, "local").await;
    wait_shared(&a).await;
    wait_shared(&b).await;
    let r = a.chat(hello()).await;
    assert_eq!(r.headers()["x-chatgate-cache"], "miss");
    let r = b.chat(hello()).await;
    assert_eq!(r.headers()["x-chatgate-cache"], "hit");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["message"]["content"], "shared words");
    assert_eq!(v["cached"], true);
    assert_eq!(up.calls(), 1);
    let ttls = keys_with_ttl(&server, "chatgate:cache:*").await;
    assert_eq!(ttls.len(), 1);
    assert!((1..=600).contains(&ttls[0]), "{ttls:?}");
}

#[tokio::test]
async fn redis_stopped_under_traffic_gives_no_5xx_with_local_fallback() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]);
    let toml = cached_toml(&up, "").replace(
        "[auth.keys.other]",
        "[budgets]\ntokens_per_day = 1000000\n\n[auth.keys.other]",
    );
    let app = spawn_on(&server, &toml, "local").await;
    wait_shared(&app).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (client, url) = (app.client.clone(), app.url("/api/v1/chat"));
        tasks.spawn(async move {
            let body = serde_json::json!({"messages": say(&format!("hello {}", i % 5))});
            client
                .post(url)
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        });
        if i == 10 {
            server.kill();
        }
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    wait_degraded(&app).await;
    // Afterwards budgets count per replica and the cache misses: still 200.
    let r = app.chat(hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-chatgate-cache"], "miss");
}

#[tokio::test]
async fn chats_with_budgets_are_refused_503_while_redis_is_down_under_deny() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]);
    let toml = priced(&up, "[budgets]\ntokens_per_day = 1000\n");
    let app = spawn_on(&server, &toml, "deny").await;
    wait_shared(&app).await;
    assert_eq!(app.chat(hello()).await.status(), 200);
    server.kill();
    // The first call after the kill finds Redis gone (limits or spend): 503, never a pass.
    error_of(app.chat(hello()).await, 503, "overloaded").await;
    assert_eq!(up.calls(), 1);
}
