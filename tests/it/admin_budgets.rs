//! `GET /admin/v1/budgets` (issue 15): every budget that applies now, read
//! through the spend store, behind the admin key.

use serde_json::{Value, json};

use crate::cost::priced;
use crate::support::reloadable::{ADMIN_KEY, admin_toml};
use crate::support::*;

/// 2025-03-31T12:00:00Z: the day resets at midnight, the month on April 1st.
const NOON: u64 = 1_743_422_400;

#[tokio::test]
async fn the_budgets_route_shows_gateway_and_key_spend_caps_and_resets() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]);
    let budgets = "[budgets]\ntokens_per_day = 1000\nusd_per_month = 5.0\nper_user_tokens_per_day = 50\n\
                   [auth.keys.test]\ntokens_per_day = 100\n";
    let toml = format!("{}{}", admin_toml(), priced(&up, budgets));
    let config = load_config(&toml, &upstream_env()).unwrap_or_else(|p| panic!("{p:?}"));
    let clock = TestClock::at(NOON);
    let app = spawn_config_with(config, axum::Router::new(), clock.clock()).await;
    assert_eq!(app.chat(json!({"messages": say("x")})).await.status(), 200);

    let get = |key: Option<&'static str>| {
        let mut req = app.client.get(app.url("/admin/v1/budgets"));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send()
    };
    assert_eq!(get(None).await.unwrap().status(), 401);
    assert_eq!(get(Some(KEY)).await.unwrap().status(), 401);
    let r = get(Some(ADMIN_KEY)).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let find = |scope: &str, window: &str, unit: &str| {
        body["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["scope"] == scope && b["window"] == window && b["unit"] == unit)
            .unwrap_or_else(|| panic!("{scope} {window} {unit}: {body}"))
            .clone()
    };
    let day = find("gateway", "day", "tokens");
    assert_eq!(
        (day["spent"].as_f64(), day["cap"].as_f64()),
        (Some(12.0), Some(1000.0))
    );
    assert_eq!(day["resets_at"], "2025-04-01T00:00:00.000Z");
    let month = find("gateway", "month", "usd");
    assert_eq!(month["resets_at"], "2025-04-01T00:00:00.000Z");
    assert!(month["spent"].as_f64().unwrap() > 0.0, "{month}");
    let key = find("key:test", "day", "tokens");
    assert_eq!(
        (key["spent"].as_f64(), key["cap"].as_f64()),
        (Some(12.0), Some(100.0))
    );
    assert_eq!(body["per_user"]["cap"].as_f64(), Some(50.0), "{body}");
}

#[tokio::test]
async fn without_an_admin_key_the_budgets_route_is_not_there() {
    let app = spawn_app("").await;
    let r = app
        .client
        .get(app.url("/admin/v1/budgets"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
