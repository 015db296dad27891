//! Canary variants (issue 15): sticky assignment by a stable hash, growth
//! that only moves users onto the canary, the variant in answers, headers
//! and metrics, automatic rollback on a failing canary, re-enabling, and a
//! cache that never crosses variants.

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::prometheus::series;
use crate::support::reloadable::{ADMIN_KEY, Reloadable, admin_toml};
use crate::support::*;

/// A model whose stable variant answers as `mock:stable-m` and whose canary
/// answers as `mock:canary-m`, `percent` of users on the canary.
fn mock_canary(percent: f64, extra: &str) -> String {
    format!(
        "[providers.mock]\nkind = \"mock\"\n\
         [models.default]\ntargets = [\"mock:stable-m\"]\n{extra}\n\
         [models.default.canary]\ntargets = [\"mock:canary-m\"]\npercent = {percent}\n"
    )
}

/// The variant each of `users` gets (asserting the body and header agree
/// with the target that answered).
async fn variants(app: &TestApp, users: impl Iterator<Item = String>) -> Vec<(String, String)> {
    futures_util::stream::iter(users)
        .map(|user| async move {
            let r = app.chat(json!({"messages": say("hi"), "user": user})).await;
            assert_eq!(r.status(), 200);
            let header = r.headers()["x-chatgate-variant"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["variant"], header.as_str(), "{body}");
            let expected = format!("{header}-m");
            assert_eq!(body["provider_model"], expected.as_str(), "{body}");
            (user, header)
        })
        .buffered(16)
        .collect()
        .await
}

fn users(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("user-{i}"))
}

#[tokio::test]
async fn ten_percent_of_two_thousand_users_get_the_canary_and_each_keeps_their_variant() {
    let app = spawn_app(&mock_canary(10.0, "")).await;
    let first = variants(&app, users(2000)).await;
    let canary = first.iter().filter(|(_, v)| v == "canary").count();
    assert!(
        (140..=260).contains(&canary),
        "10 % ± 3 % of 2000 users, got {canary}"
    );
    let again = variants(&app, users(300)).await;
    assert_eq!(again, first[..300], "the same user gets the same variant");
}

#[tokio::test]
async fn raising_the_percent_only_moves_users_from_stable_to_canary() {
    let at5 = spawn_app(&mock_canary(5.0, "")).await;
    let at20 = spawn_app(&mock_canary(20.0, "")).await;
    let before = variants(&at5, users(1000)).await;
    let after = variants(&at20, users(1000)).await;
    for ((user, was), (_, now)) in before.iter().zip(&after) {
        assert!(
            !(was == "canary" && now == "stable"),
            "{user} left the canary"
        );
    }
    let count = |v: &[(String, String)]| v.iter().filter(|(_, x)| x == "canary").count();
    assert!(
        count(&after) > count(&before) * 2,
        "more users on the canary at 20 %"
    );
}

#[tokio::test]
async fn a_model_without_a_canary_answers_as_stable_on_both_routes() {
    let app =
        spawn_app("[providers.mock]\nkind = \"mock\"\n[models.default]\ntargets = [\"mock:m\"]\n")
            .await;
    let r = app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(r.headers()["x-chatgate-variant"], "stable");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["variant"], "stable");
    let r = app
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "default", "messages": say("hi")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-chatgate-variant"], "stable");
}

#[tokio::test]
async fn the_openai_route_and_streams_name_the_canary_and_chat_metrics_count_each_variant() {
    let app = spawn_app(&mock_canary(100.0, "")).await;
    let r = app
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "default", "messages": say("hi")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-chatgate-variant"], "canary");
    let r = app
        .chat(json!({"messages": say("hi"), "stream": true}))
        .await;
    assert_eq!(r.headers()["x-chatgate-variant"], "canary");
    let events = parse_sse(&r.text().await.unwrap());
    let done: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(done["variant"], "canary", "{done}");
    let text = app.metrics().await;
    let labels = [
        ("model", "default"),
        ("variant", "canary"),
        ("outcome", "success"),
    ];
    assert_eq!(
        series(&text, "chatgate_chat_requests_total", &labels),
        Some(2.0),
        "{text}"
    );
    let labels = [("model", "default"), ("variant", "canary")];
    assert_eq!(
        series(&text, "chatgate_chat_duration_seconds_count", &labels),
        Some(2.0)
    );
    assert_eq!(
        series(&text, "chatgate_canary_percent", &[("model", "default")]),
        Some(100.0)
    );
    assert_eq!(
        series(
            &text,
            "chatgate_canary_rollbacks_total",
            &[("model", "default")]
        ),
        Some(0.0)
    );
}

/// A model whose canary (on `bad`) takes every request and rolls back after
/// 4 requests with more than half failing.
fn failing_canary(good: &Upstream, bad: &Upstream, fallback: &str) -> String {
    format!(
        "{}{}\n[models.default]\ntargets = [\"good:m\"]\n\
         [models.default.canary]\ntargets = [\"bad:m\"]\npercent = 100\nsticky = \"request\"\n{fallback}\n\
         rollback_error_rate = 0.5\nrollback_min_requests = 4\nrollback_window = \"1h\"\n",
        Provider::openai("good", good).max_retries(0),
        Provider::openai("bad", bad).max_retries(0),
    )
}

#[tokio::test]
async fn a_failing_canary_rolls_back_by_itself_and_stable_takes_every_request() {
    let (good, bad) = (Upstream::openai().await, Upstream::openai().await);
    good.push([Reply::text("fine")]);
    bad.push([Reply::status(500)]);
    let app = spawn_app_with_env(&failing_canary(&good, &bad, ""), &upstream_env()).await;
    for _ in 0..4 {
        let r = app.chat(json!({"messages": say("hi")})).await;
        assert_eq!(r.status(), 503);
    }
    let text = app.metrics().await;
    let labels = [
        ("model", "default"),
        ("variant", "canary"),
        ("outcome", "error"),
    ];
    assert_eq!(
        series(&text, "chatgate_chat_requests_total", &labels),
        Some(4.0)
    );
    assert_eq!(
        series(
            &text,
            "chatgate_canary_rollbacks_total",
            &[("model", "default")]
        ),
        Some(1.0)
    );
    assert_eq!(
        series(&text, "chatgate_canary_percent", &[("model", "default")]),
        Some(0.0)
    );
    for _ in 0..5 {
        let r = app.chat(json!({"messages": say("hi")})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-chatgate-variant"], "stable");
    }
    assert_eq!(
        bad.calls(),
        4,
        "nothing more reaches the rolled-back canary"
    );
}

#[tokio::test]
async fn degraded_canary_answers_count_toward_the_rollback() {
    let (good, bad) = (Upstream::openai().await, Upstream::openai().await);
    bad.push([Reply::status(500)]);
    let toml = failing_canary(&good, &bad, "fallback_message = \"sorry\"");
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    for _ in 0..4 {
        let r = app.chat(json!({"messages": say("hi")})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-chatgate-degraded"], "true");
    }
    let text = app.metrics().await;
    let labels = [
        ("model", "default"),
        ("variant", "canary"),
        ("outcome", "degraded"),
    ];
    assert_eq!(
        series(&text, "chatgate_chat_requests_total", &labels),
        Some(4.0)
    );
    assert_eq!(
        series(&text, "chatgate_canary_percent", &[("model", "default")]),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_clients_bad_requests_on_the_canary_never_roll_it_back() {
    let (good, bad) = (Upstream::openai().await, Upstream::openai().await);
    bad.push([Reply::status(400)]);
    let app = spawn_app_with_env(&failing_canary(&good, &bad, ""), &upstream_env()).await;
    for _ in 0..8 {
        let r = app.chat(json!({"messages": say("hi")})).await;
        assert_eq!(r.status(), 400);
    }
    let text = app.metrics().await;
    assert_eq!(
        series(
            &text,
            "chatgate_canary_rollbacks_total",
            &[("model", "default")]
        ),
        Some(0.0)
    );
    assert_eq!(
        series(&text, "chatgate_canary_percent", &[("model", "default")]),
        Some(100.0)
    );
    let r = app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(r.headers()["x-chatgate-variant"], "canary");
}

#[tokio::test]
async fn a_reload_re_enables_a_rolled_back_canary_at_its_configured_percent() {
    let (good, bad) = (Upstream::openai().await, Upstream::openai().await);
    bad.push([Reply::status(500)]);
    let toml = format!("{}{}", admin_toml(), failing_canary(&good, &bad, ""));
    let r = Reloadable::start(&toml).await;
    for _ in 0..4 {
        r.app.chat(json!({"messages": say("hi")})).await;
    }
    let stable = r.app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(stable.headers()["x-chatgate-variant"], "stable");
    let (status, body) = r.reload().await;
    assert_eq!(status, 200, "{body}");
    let again = r.app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(again.headers()["x-chatgate-variant"], "canary");
    let text = r.app.metrics().await;
    assert_eq!(
        series(&text, "chatgate_canary_percent", &[("model", "default")]),
        Some(100.0)
    );
}

#[tokio::test]
async fn the_cache_never_serves_one_variants_answer_to_the_other() {
    let app = spawn_app(&mock_canary(50.0, "cache_ttl = \"1h\"")).await;
    let sides = variants(&app, users(40)).await;
    let on = |v: &str| sides.iter().find(|(_, x)| x == v).unwrap().0.clone();
    let (stable, canary) = (on("stable"), on("canary"));
    let ask = |user: String| {
        let app = &app;
        async move {
            let r = app
                .chat(json!({"messages": say("the same question"), "user": user}))
                .await;
            let cache = r.headers()["x-chatgate-cache"].to_str().unwrap().to_owned();
            let body: Value = r.json().await.unwrap();
            (
                cache,
                body["variant"].as_str().unwrap().to_owned(),
                body["provider_model"].clone(),
            )
        }
    };
    assert_eq!(ask(stable.clone()).await.0, "miss");
    let (cache, variant, model) = ask(canary.clone()).await;
    assert_eq!((cache.as_str(), variant.as_str()), ("miss", "canary"));
    assert_eq!(model, "canary-m");
    let (cache, variant, model) = ask(canary).await;
    assert_eq!(
        (cache.as_str(), variant.as_str(), model),
        ("hit", "canary", json!("canary-m"))
    );
    let (cache, variant, model) = ask(stable).await;
    assert_eq!(
        (cache.as_str(), variant.as_str(), model),
        ("hit", "stable", json!("stable-m"))
    );
}

async fn admin_put(app: &TestApp, path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = app.client.put(app.url(path)).body(body.to_owned());
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let r = req
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn admin_get(app: &TestApp, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = app.client.get(app.url(path));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_admin_call_re_enables_a_rolled_back_canary_at_the_percent_it_sets() {
    let (good, bad) = (Upstream::openai().await, Upstream::openai().await);
    bad.push([Reply::status(500)]);
    let toml = format!("{}{}", admin_toml(), failing_canary(&good, &bad, ""));
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    for _ in 0..4 {
        app.chat(json!({"messages": say("hi")})).await;
    }
    let (status, body) = admin_get(&app, "/admin/v1/canaries", Some(ADMIN_KEY)).await;
    assert_eq!(status, 200);
    let c = &body["canaries"][0];
    assert_eq!(c["model"], "default");
    assert_eq!(c["rolled_back"], true, "{body}");
    assert_eq!(
        (
            c["configured_percent"].as_f64(),
            c["effective_percent"].as_f64()
        ),
        (Some(100.0), Some(0.0))
    );
    assert_eq!(
        (c["window_requests"].as_u64(), c["window_errors"].as_u64()),
        (Some(4), Some(4))
    );

    bad.push([Reply::text("fixed")]);
    let (status, body) = admin_put(
        &app,
        "/admin/v1/canaries/default",
        Some(ADMIN_KEY),
        r#"{"percent": 100}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["rolled_back"].as_bool(),
            body["effective_percent"].as_f64()
        ),
        (Some(false), Some(100.0))
    );
    let r = app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(r.headers()["x-chatgate-variant"], "canary");
    let text = app.metrics().await;
    assert_eq!(
        series(&text, "chatgate_canary_percent", &[("model", "default")]),
        Some(100.0)
    );
}

#[tokio::test]
async fn the_canary_admin_routes_need_an_admin_key_and_refuse_bad_values_and_unknown_canaries() {
    let toml = format!(
        "{}{}[models.plain]\ntargets = [\"mock:m\"]\n",
        admin_toml(),
        mock_canary(5.0, "")
    );
    let app = spawn_app(&toml).await;
    let path = "/admin/v1/canaries/default";
    assert_eq!(admin_get(&app, "/admin/v1/canaries", None).await.0, 401);
    assert_eq!(
        admin_get(&app, "/admin/v1/canaries", Some(KEY)).await.0,
        401,
        "a client key is not an admin key"
    );
    assert_eq!(
        admin_put(&app, path, None, r#"{"percent": 5}"#).await.0,
        401
    );
    assert_eq!(
        admin_put(&app, path, Some(KEY), r#"{"percent": 5}"#)
            .await
            .0,
        401
    );
    for bad in [
        r#"{"percent": 101}"#,
        r#"{"percent": -1}"#,
        r#"{"percent": "x"}"#,
        "{}",
        "nope",
        r#"{"percent": 5, "x": 1}"#,
    ] {
        let (status, body) = admin_put(&app, path, Some(ADMIN_KEY), bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["request_id"].is_string(), "{body}");
    }
    for model in ["plain", "nope"] {
        let (status, _) = admin_put(
            &app,
            &format!("/admin/v1/canaries/{model}"),
            Some(ADMIN_KEY),
            r#"{"percent": 5}"#,
        )
        .await;
        assert_eq!(status, 404, "{model}");
    }
    let (status, body) = admin_get(&app, "/admin/v1/canaries", Some(ADMIN_KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(body["canaries"].as_array().unwrap().len(), 1, "{body}");
    let (status, body) = admin_put(&app, path, Some(ADMIN_KEY), r#"{"percent": 42.5}"#).await;
    assert_eq!(
        (status, body["effective_percent"].as_f64()),
        (200, Some(42.5))
    );

    let without = spawn_app(&mock_canary(5.0, "")).await;
    assert_eq!(
        admin_get(&without, "/admin/v1/canaries", Some(ADMIN_KEY))
            .await
            .0,
        404
    );
    assert_eq!(
        admin_put(&without, path, Some(ADMIN_KEY), r#"{"percent": 5}"#)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn an_admin_override_reaches_a_second_replica_through_redis_within_the_poll_interval() {
    use crate::support::redis::{RedisServer, spawn_on, wait_shared};
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let toml = format!("{}{}", admin_toml(), mock_canary(5.0, ""));
    let a = spawn_on(&server, &toml, "local").await;
    let b = spawn_on(&server, &toml, "local").await;
    wait_shared(&a).await;
    wait_shared(&b).await;
    let (status, body) = admin_put(
        &a,
        "/admin/v1/canaries/default",
        Some(ADMIN_KEY),
        r#"{"percent": 60}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["shared"], true, "{body}");
    let started = std::time::Instant::now();
    let seen = eventually(std::time::Duration::from_secs(10), || {
        b.state.catalog.rollouts()[0].effective() == 60.0
    })
    .await;
    assert!(seen, "replica b never applied the override");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (_, view) = admin_get(&b, "/admin/v1/canaries", Some(ADMIN_KEY)).await;
    assert_eq!(
        view["canaries"][0]["effective_percent"].as_f64(),
        Some(60.0)
    );
    let mut conn = server.connection().await;
    let ttl: i64 = ::redis::cmd("TTL")
        .arg("chatgate:canary:default")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 86_400, "{ttl}");
}
