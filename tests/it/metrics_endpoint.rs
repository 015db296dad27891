//! The `/metrics` endpoint itself over real HTTP: histogram shape, route
//! labels that stay bounded whatever paths clients send, and the optional
//! bearer token (`metrics.token`).

use crate::support::prometheus::{label_values, series};
use crate::support::*;
use chatgate::meters::{HTTP_DURATION, HTTP_REQUESTS, UPSTREAM_DURATION};
use serde_json::{Value, json};

#[tokio::test]
async fn duration_histograms_have_buckets_from_10ms_to_120s_a_sum_and_a_count_per_request() {
    let up = Upstream::openai().await;
    let toml = format!(
        "{}\n[models.default]\ntargets = [\"openai:gpt-x\"]\n",
        provider_toml("openai", "openai", &up)
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    for _ in 0..4 {
        assert_eq!(app.chat(json!({"messages": say("hi")})).await.status(), 200);
    }
    let text = app.metrics().await;
    let les = [
        "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "20", "30", "60",
        "120", "+Inf",
    ];
    let http = [("method", "POST"), ("route", "/api/v1/chat")];
    let upstream = [("provider", "openai"), ("model", "gpt-x")];
    for (name, labels) in [(HTTP_DURATION, &http), (UPSTREAM_DURATION, &upstream)] {
        let bucket = format!("{name}_bucket");
        assert_eq!(label_values(&text, &bucket, "le"), les, "{name} buckets");
        let mut previous = 0.0;
        for le in les {
            let mut with_le = labels.to_vec();
            with_le.push(("le", le));
            let n = series(&text, &bucket, &with_le).unwrap();
            assert!(n >= previous, "{name} buckets are cumulative");
            previous = n;
        }
        assert_eq!(previous, 4.0, "{name}: +Inf holds every request");
        let count = series(&text, &format!("{name}_count"), labels);
        assert_eq!(count, Some(4.0), "{name}_count");
        let sum = series(&text, &format!("{name}_sum"), labels).unwrap();
        assert!(sum > 0.0, "{name}_sum");
        assert!(text.contains(&format!("# TYPE {name} histogram")));
    }
}

#[tokio::test]
async fn unknown_paths_share_the_unmatched_route_label() {
    let app = spawn_app("").await;
    let mut paths = Vec::new();
    for n in 0..200 {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = match n % 3 {
            0 => format!("/{id}"),
            1 => format!("/api/v1/{id}"),
            _ => format!("/health/{id}/{n}"),
        };
        assert_eq!(app.get(&path).await.status(), 404, "{path}");
        paths.push(id);
    }
    let text = app.metrics().await;
    assert_eq!(
        series(
            &text,
            HTTP_REQUESTS,
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        Some(200.0)
    );
    let mut routes = label_values(&text, "chatgate_http_request", "route");
    routes.sort();
    routes.dedup();
    assert_eq!(routes, ["unmatched"]);
    for id in &paths {
        assert!(
            !text.contains(id.as_str()),
            "a raw path leaked into a label"
        );
    }
}

#[tokio::test]
async fn a_metrics_token_from_the_environment_guards_the_endpoint() {
    let token = "metrics-token-0123";
    let app = spawn_app_with_env("", &[("CHATGATE_METRICS__TOKEN", token)]).await;
    assert_guarded(&app, token).await;
}

#[tokio::test]
async fn a_metrics_token_from_toml_guards_the_endpoint() {
    let token = "toml-token-4567";
    let app = spawn_app(&format!("[metrics]\ntoken = \"{token}\"\n")).await;
    assert_guarded(&app, token).await;
}

async fn assert_guarded(app: &TestApp, token: &str) {
    let url = app.url("/metrics");
    for request in [
        app.client.get(&url),
        app.client.get(&url).bearer_auth("wrong"),
        app.client.get(&url).bearer_auth(format!("{token}x")),
        app.client.get(&url).header("x-api-key", token),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
        assert!(!v.to_string().contains(token));
    }
    for scheme in ["Bearer", "bearer"] {
        let r = app
            .client
            .get(&url)
            .header("authorization", format!("{scheme} {token}"));
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        assert!(r.text().await.unwrap().contains(HTTP_REQUESTS));
    }
}
