//! Cost control over real HTTP: prices and cost, budgets (key, user,
//! gateway; UTC windows from an injected clock), FAQ answers and the
//! response cache, with the scriptable upstream counting provider calls.

use serde_json::{Value, json};

use crate::support::*;

/// 2025-03-10 23:00:00 UTC: an hour before midnight.
const EVENING: u64 = 1_741_647_600;
/// 2025-03-31 12:00:00 UTC: half a day before the month ends.
const MONTH_END_NOON: u64 = 1_743_422_400;
pub(crate) const OTHER_KEY: &str = "other-test-key";

/// One OpenAI-compatible provider `up` serving `gpt-x` at $1 in / $2 out per
/// million tokens, as model `default`, plus a second client key `other`.
pub(crate) fn priced(up: &Upstream, extra: &str) -> String {
    format!(
        "{}\n[providers.up.prices]\n\"gpt-x\" = {{ input = 1.0, output = 2.0 }}\n\
         [models.default]\ntargets = [\"up:gpt-x\"]\n{extra}\n\
         [auth.keys.other]\nsha256 = \"{}\"\n",
        Provider::openai("up", up).max_retries(0),
        chatgate::config::sha256_hex(OTHER_KEY),
    )
}

async fn app_at(toml: &str, secs: u64) -> (TestApp, TestClock) {
    let clock = TestClock::at(secs);
    let config = load_config(toml, &upstream_env()).unwrap_or_else(|p| panic!("{p:?}"));
    let app = spawn_config_with(config, axum::Router::new(), clock.clock()).await;
    (app, clock)
}

pub(crate) async fn chat_as(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub(crate) fn hello() -> Value {
    json!({"messages": say("hello")})
}

async fn assert_budget_exceeded(r: reqwest::Response, retry_after: u64, scope: &str, window: &str) {
    assert_eq!(r.headers()["retry-after"], retry_after.to_string().as_str());
    let (_, e) = error_of(r, 429, "budget_exceeded").await;
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(scope) && message.contains(window),
        "{message}"
    );
}

#[tokio::test]
async fn every_answer_carries_its_cost_in_body_header_and_metric() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]); // 5 input, 7 output tokens
    let app = spawn_app_with_env(&priced(&up, ""), &upstream_env()).await;
    let r = app.chat(hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-chatgate-cost-usd"], "0.0000190000");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["usage"]["cost_usd"], 0.000019);
    let r = app
        .post(
            "/api/v1/chat/completions",
            &json!({"messages": say("hello")}),
        )
        .await;
    assert_eq!(r.headers()["x-chatgate-cost-usd"], "0.0000190000");
    let text = app.metrics().await;
    let cost = metric(
        &text,
        "chatgate_cost_usd_total",
        &[("provider", "up"), ("model", "gpt-x"), ("key_id", "test")],
    );
    assert!((cost - 0.000038).abs() < 1e-12, "{cost}");
}

#[tokio::test]
async fn unpriced_targets_warn_and_are_refused_once_usd_budgets_exist() {
    let up = Upstream::openai().await;
    let toml = format!(
        "{}\n[models.default]\ntargets = [\"up:gpt-free\"]\n",
        Provider::openai("up", &up)
    );
    let config = load_config(&toml, &upstream_env()).unwrap();
    assert!(
        config
            .sources
            .warnings
            .iter()
            .any(|w| w.contains("providers.up.prices.\"gpt-free\"")),
        "{:?}",
        config.sources.warnings
    );
    let problems = load_config(
        &format!("{toml}\n[budgets]\nusd_per_day = 5.0\n"),
        &upstream_env(),
    )
    .unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter()
            .any(|p| p.contains("providers.up.prices.\"gpt-free\"")
                && p.contains("no price, but USD budgets are set")),
        "{text:?}"
    );
}

#[tokio::test]
async fn a_key_budget_stops_that_key_until_utc_midnight_but_not_another_key() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]); // 12 tokens an answer
    let toml = priced(&up, "").replace(
        "[auth.keys.other]",
        "[auth.keys.test]\ntokens_per_day = 10\n\n[auth.keys.other]",
    );
    let (app, clock) = app_at(&toml, EVENING).await;
    assert_eq!(app.chat(hello()).await.status(), 200);
    assert_budget_exceeded(app.chat(hello()).await, 3600, "key", "day").await;
    assert_eq!(up.calls(), 1, "no provider call over budget");
    assert_eq!(chat_as(&app, OTHER_KEY, hello()).await.status(), 200);
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "chatgate_budget_exceeded_total", &[("scope", "key")]),
        1.0
    );
    let ratio = metric(
        &text,
        "chatgate_budget_used_ratio",
        &[("scope", "key:test"), ("window", "day")],
    );
    assert_eq!(ratio, 1.2);
    clock.set(EVENING + 3600);
    assert_eq!(app.chat(hello()).await.status(), 200, "a new UTC day");
}

#[tokio::test]
async fn a_usd_month_budget_retries_after_the_first_of_next_month() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]); // $0.000019 an answer
    let toml = priced(&up, "").replace(
        "[auth.keys.other]",
        "[auth.keys.test]\nusd_per_month = 0.00001\n\n[auth.keys.other]",
    );
    let (app, _clock) = app_at(&toml, MONTH_END_NOON).await;
    assert_eq!(app.chat(hello()).await.status(), 200);
    assert_budget_exceeded(app.chat(hello()).await, 12 * 3600, "key", "month").await;
}

#[tokio::test]
async fn a_user_budget_stops_one_end_user_within_a_key() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]);
    let toml = priced(&up, "[budgets]\nper_user_tokens_per_day = 10\n");
    let (app, _clock) = app_at(&toml, EVENING).await;
    let as_user = |u: &str| json!({"messages": say("hello"), "user": u});
    assert_eq!(app.chat(as_user("alice")).await.status(), 200);
    assert_budget_exceeded(app.chat(as_user("alice")).await, 3600, "user", "day").await;
    assert_eq!(app.chat(as_user("bob")).await.status(), 200);
    assert_eq!(
        chat_as(&app, OTHER_KEY, as_user("alice")).await.status(),
        200,
        "alice of another key"
    );
    assert_eq!(up.calls(), 3);
}

#[tokio::test]
async fn the_gateway_budget_stops_every_key_and_streams_spend_too() {
    let up = Upstream::openai().await;
    up.push([Reply::stream(&["a", "b", "c", "d", "e", "f"])]); // 5 + 6 tokens
    let toml = priced(&up, "[budgets]\ntokens_per_day = 10\n");
    let (app, _clock) = app_at(&toml, EVENING).await;
    let r = app
        .chat(json!({"messages": say("hello"), "stream": true}))
        .await;
    assert_eq!(r.status(), 200);
    let events = parse_sse(&r.text().await.unwrap());
    assert_eq!(delta_text(&events), "abcdef");
    assert_budget_exceeded(
        chat_as(&app, OTHER_KEY, hello()).await,
        3600,
        "gateway",
        "day",
    )
    .await;
    assert_eq!(up.calls(), 1);
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            "chatgate_budget_exceeded_total",
            &[("scope", "gateway")]
        ),
        1.0
    );
}

#[tokio::test]
async fn alerts_are_logged_once_per_fraction_per_window() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]); // 12 tokens an answer
    let toml = priced(
        &up,
        "[budgets]\ntokens_per_day = 50\nalert_at = [0.2, 0.4]\n",
    );
    let running = crate::support::binary::Chatgate::with_config(&toml)
        .envs(upstream_env())
        .spawn()
        .await;
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let r = client
            .post(running.url("/api/v1/chat"))
            .bearer_auth(KEY)
            .json(&hello())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Stopped first: a request's line is written when its body ends, which
    // may be just after the client saw the answer.
    let (_, output) = running.stop().await;
    let events: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let alerts: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "budget alert")
        .collect();
    // Spend 12 crosses 20 % (10), 24 crosses 40 % (20); 36 and 48 cross nothing new.
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0]["level"], "WARN");
    assert_eq!(alerts[0]["scope"], "gateway");
    assert_eq!(alerts[0]["window"], "day");
    assert_eq!(alerts[0]["cap"], 50.0);
    assert_eq!(alerts[1]["spent"], 24.0);
    let logged: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "request" && e["route"] == "/api/v1/chat")
        .collect();
    assert_eq!(logged.len(), 4);
    assert_eq!(logged[0]["cost_usd"], 0.000019, "{:?}", logged[0]);
}

#[tokio::test]
async fn faq_rules_answer_both_routes_and_streams_without_a_provider_call() {
    let up = Upstream::openai().await;
    let toml = priced(
        &up,
        "[[faq]]\nname = \"hours\"\nphrases = [\"delivery hours\"]\nanswer = \"Mon-Sat, 8-20.\"\n\
         [[faq]]\nname = \"status\"\nregex = \"(?i)\\\\border status\\\\b\"\nanswer = \"See your account.\"\n",
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let r = app
        .chat(json!({"messages": say("What are your Delivery-Hours?")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-chatgate-cost-usd"], "0.0000000000");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["provider"], "faq");
    assert_eq!(v["provider_model"], "hours");
    assert_eq!(v["message"]["content"], "Mon-Sat, 8-20.");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
    );
    let r = app
        .post(
            "/api/v1/chat/completions",
            &json!({"messages": say("my ORDER STATUS please")}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "See your account.");
    let r = app
        .chat(json!({"messages": say("delivery hours?"), "stream": true}))
        .await;
    let events = parse_sse(&r.text().await.unwrap());
    assert_eq!(delta_text(&events), "Mon-Sat, 8-20.");
    let done: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(done["provider"], "faq");
    assert_eq!(up.calls(), 0);
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "chatgate_faq_answers_total", &[("rule", "hours")]),
        2.0
    );
}

#[tokio::test]
async fn an_invalid_faq_regex_is_a_config_problem() {
    let toml = "[[faq]]\nname = \"bad\"\nregex = \"(unclosed\"\nanswer = \"x\"\n";
    let problems = load_config(toml, &[]).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.to_string().contains("faq") && p.to_string().contains("invalid regex")),
        "{problems:?}"
    );
}

/// Two replicas on one shared store (`spawn(toml, on_redis_error)` starts
/// one): a key budget spent through one is spent for the other, and one's
/// cached answer is the other's hit.
pub(crate) async fn spend_and_cache_are_shared(spawn: impl AsyncFn(&str, &str) -> TestApp) {
    // Spend: one key budget for both (an add of tokens and USD in one slot).
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]); // 12 tokens
    let toml = priced(&up, "").replace(
        "[auth.keys.other]",
        "[auth.keys.test]\ntokens_per_day = 10\nusd_per_day = 1.0\n\n[auth.keys.other]",
    );
    let c = spawn(&toml, "deny").await;
    let d = spawn(&toml, "deny").await;
    crate::support::redis::wait_shared(&c).await;
    crate::support::redis::wait_shared(&d).await;
    assert_eq!(c.chat(hello()).await.status(), 200);
    let (_, e) = error_of(d.chat(hello()).await, 429, "budget_exceeded").await;
    assert!(e["message"].as_str().unwrap().contains("key"));
    assert_eq!(chat_as(&d, OTHER_KEY, hello()).await.status(), 200);

    // Cache: one replica's answer is the other's hit.
    let cached_up = Upstream::openai().await;
    cached_up.push([Reply::text("shared words")]);
    let toml = cached_toml(&cached_up, "");
    let e1 = spawn(&toml, "local").await;
    let e2 = spawn(&toml, "local").await;
    crate::support::redis::wait_shared(&e1).await;
    crate::support::redis::wait_shared(&e2).await;
    assert_eq!(e1.chat(hello()).await.headers()["x-chatgate-cache"], "miss");
    assert_eq!(e2.chat(hello()).await.headers()["x-chatgate-cache"], "hit");
    assert_eq!(cached_up.calls(), 1);
}

pub(crate) fn cached_toml(up: &Upstream, extra: &str) -> String {
    priced(up, &format!("cache_ttl = \"10m\"\n{extra}"))
}

async fn cache_header(r: &reqwest::Response) -> String {
    r.headers()["x-chatgate-cache"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_repeated_request_is_answered_from_the_cache_per_key_and_as_a_stream() {
    let up = Upstream::openai().await;
    up.push([Reply::text("cached words")]);
    let app = spawn_app_with_env(&cached_toml(&up, ""), &upstream_env()).await;
    let r = app.chat(hello()).await;
    assert_eq!(cache_header(&r).await, "miss");
    let r = app.chat(hello()).await;
    assert_eq!(cache_header(&r).await, "hit");
    assert_eq!(r.headers()["x-chatgate-cost-usd"], "0.0000000000");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["cached"], true);
    assert_eq!(v["message"]["content"], "cached words");
    assert_eq!(v["provider"], "up");
    let r = app
        .post(
            "/api/v1/chat/completions",
            &json!({"messages": say("hello")}),
        )
        .await;
    assert_eq!(
        cache_header(&r).await,
        "hit",
        "the same request on the OpenAI route"
    );
    let r = app
        .chat(json!({"messages": say("hello"), "stream": true}))
        .await;
    assert_eq!(cache_header(&r).await, "hit");
    let events = parse_sse(&r.text().await.unwrap());
    assert_eq!(delta_text(&events), "cached words");
    assert_eq!(up.calls(), 1);
    let r = chat_as(&app, OTHER_KEY, hello()).await;
    assert_eq!(cache_header(&r).await, "miss", "never another key's entry");
    assert_eq!(up.calls(), 2);
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            "chatgate_cache_requests_total",
            &[("model", "default"), ("result", "hit")]
        ),
        3.0
    );
    assert_eq!(metric(&text, "chatgate_cache_entries", &[]), 2.0);
    assert!(metric(&text, "chatgate_cache_bytes", &[]) > 0.0);
}

#[tokio::test]
async fn cache_control_no_cache_refreshes_and_no_store_leaves_the_cache_alone() {
    let up = Upstream::openai().await;
    up.push([
        Reply::text("first"),
        Reply::text("second"),
        Reply::text("third"),
    ]);
    let app = spawn_app_with_env(&cached_toml(&up, ""), &upstream_env()).await;
    let with = |cc: &'static str| {
        app.client
            .post(app.url("/api/v1/chat"))
            .bearer_auth(KEY)
            .header("cache-control", cc)
            .json(&hello())
            .send()
    };
    let r = with("no-store").await.unwrap();
    assert_eq!(cache_header(&r).await, "bypass");
    let r = app.chat(hello()).await;
    assert_eq!(cache_header(&r).await, "miss", "no-store stored nothing");
    let r = with("no-cache").await.unwrap();
    assert_eq!(cache_header(&r).await, "bypass");
    let v: Value = app.chat(hello()).await.json().await.unwrap();
    assert_eq!(
        v["message"]["content"], "third",
        "no-cache stored its fresh answer"
    );
    assert_eq!(up.calls(), 3);
}

#[tokio::test]
async fn degraded_answers_errors_and_uncached_models_are_never_stored() {
    let up = Upstream::openai().await;
    up.push([Reply::status(500), Reply::status(500), Reply::text("ok")]);
    let toml = cached_toml(&up, "fallback_message = \"sorry\"\n");
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let v: Value = app.chat(hello()).await.json().await.unwrap();
    assert_eq!(v["degraded"], true);
    let r = app.chat(hello()).await;
    assert_eq!(
        cache_header(&r).await,
        "miss",
        "the fallback was not stored"
    );
    let up2 = Upstream::openai().await;
    let app2 = spawn_app_with_env(&priced(&up2, ""), &upstream_env()).await;
    assert_eq!(cache_header(&app2.chat(hello()).await).await, "bypass");
    assert_eq!(cache_header(&app2.chat(hello()).await).await, "bypass");
    assert_eq!(up2.calls(), 2);
}

#[tokio::test]
async fn an_answer_larger_than_the_cache_is_not_stored() {
    let up = Upstream::openai().await;
    up.push([Reply::text(&"x".repeat(200))]);
    let toml = format!("{}\n[cache]\nmax_bytes = 100\n", cached_toml(&up, ""));
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    assert_eq!(cache_header(&app.chat(hello()).await).await, "miss");
    assert_eq!(cache_header(&app.chat(hello()).await).await, "miss");
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn the_readme_support_bot_example_loads_and_answers_its_faq() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### A worked example: a support bot")
        .nth(1)
        .unwrap();
    let toml = section
        .split("```toml")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let up = Upstream::openai().await;
    let toml = format!(
        "{toml}\n[providers.openai]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"TEST_UPSTREAM_KEY\"\n",
        up.base_url()
    );
    let mut env = upstream_env();
    env.push(("CHATGATE_SUPPORT_WIDGET_KEY", "widget-key"));
    let app = spawn_app_with_env(&toml, &env).await;
    let r = chat_as(
        &app,
        "widget-key",
        json!({"model": "support", "messages": say("When do you deliver?")}),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["provider_model"], "delivery-hours");
    let r = chat_as(
        &app,
        "widget-key",
        json!({"model": "support", "messages": say("Where is my order?")}),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["provider_model"], "order-status");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn a_finished_stream_is_stored_and_a_broken_one_is_not() {
    let up = Upstream::openai().await;
    up.push([
        Reply::BrokenStream(vec!["half".into()]),
        Reply::stream(&["whole ", "answer"]),
    ]);
    let app = spawn_app_with_env(&cached_toml(&up, ""), &upstream_env()).await;
    let streamed = json!({"messages": say("hello"), "stream": true});
    let r = app.chat(streamed.clone()).await;
    assert_eq!(cache_header(&r).await, "miss");
    let _ = r.text().await;
    let r = app.chat(streamed).await;
    assert_eq!(
        cache_header(&r).await,
        "miss",
        "the broken stream was not stored"
    );
    assert_eq!(
        delta_text(&parse_sse(&r.text().await.unwrap())),
        "whole answer"
    );
    let v: Value = app.chat(hello()).await.json().await.unwrap();
    assert_eq!(v["cached"], true, "the finished stream was stored");
    assert_eq!(v["message"]["content"], "whole answer");
    assert_eq!(up.calls(), 2);
}
