//! The playground in a real browser (headless Chromium over WebDriver): it
//! loads, lists the models, streams answers with their meta, shows markup as
//! text, and talks to nothing but its own origin. Plus its routes over HTTP.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::Value;

use crate::support::browser::Browser;
use crate::support::{KEY, spawn_app};

const PAYLOAD: &str = r#"<img src=x onerror="document.title='pwned'">"#;
const PLAYGROUND_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

/// The mock model, cached (so a repeat shows the `cached` badge), and answers
/// not HTML-escaped (so raw markup reaches the page: the page must cope).
fn config() -> String {
    r#"
[playground]
enabled = true

[output]
escape_html = false

[models.default]
targets = ["mock:echo"]
cache_ttl = "1m"
"#
    .into()
}

async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

/// Types `prompt`, sends it, and waits (bounded) for turn `n` (1-based) to end.
async fn ask(client: &Client, prompt: &str, n: usize) -> fantoccini::elements::Element {
    let input = client.find(Locator::Css("#prompt")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(prompt).await.unwrap();
    client
        .find(Locator::Css("#send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let selector = format!("#answers .turn:nth-child({n})[data-state]");
    let turn = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(&selector))
        .await
        .unwrap_or_else(|e| panic!("turn {n} never finished: {e}"));
    assert_eq!(
        turn.attr("data-state").await.unwrap().as_deref(),
        Some("done"),
        "turn {n}: {}",
        turn.text().await.unwrap_or_default()
    );
    turn
}

async fn text_of(turn: &fantoccini::elements::Element, css: &str) -> String {
    turn.find(Locator::Css(css))
        .await
        .unwrap()
        .prop("textContent")
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_streams_answers_with_their_meta_shows_markup_as_text_and_stays_on_its_origin()
 {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app(&config()).await;
    // One bound for the whole browser session, so a stuck page fails the test.
    let outcome = tokio::time::timeout(
        Duration::from_secs(90),
        drive(&browser.client, &app.url("/")),
    )
    .await;
    browser.close().await;
    outcome.expect("the browser test ran past 90 s");
}

async fn drive(client: &Client, page: &str) {
    client.goto(page).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "chatgate playground");

    // The key goes in; leaving the field loads the model list.
    let key = client.find(Locator::Css("#key")).await.unwrap();
    key.send_keys(KEY).await.unwrap();
    client
        .find(Locator::Css("#reload-models"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#model option[value='default']"))
        .await
        .expect("the model list never showed `default`");
    assert_eq!(
        js(client, "return sessionStorage.getItem('chatgate.key')").await,
        Value::from(KEY),
        "the key is kept for the tab"
    );

    // A streamed answer from the mock, with latency, tokens, cost and the model.
    let first = ask(client, "Hello there", 1).await;
    assert_eq!(text_of(&first, ".answer").await, "Echo: Hello there");
    assert!(text_of(&first, ".latency").await.ends_with(" ms"));
    let tokens = text_of(&first, ".tokens").await;
    assert!(
        tokens.contains(" in / ") && tokens.ends_with(" out tokens"),
        "{tokens}"
    );
    assert!(!tokens.contains('?'), "usage came through: {tokens}");
    assert!(text_of(&first, ".cost").await.starts_with('$'));
    assert_eq!(text_of(&first, ".badge.model").await, "default");
    assert!(first.find(Locator::Css(".badge.cached")).await.is_err());

    // The same question again comes from the cache, and says so.
    let second = ask(client, "Hello there", 2).await;
    assert_eq!(text_of(&second, ".answer").await, "Echo: Hello there");
    assert_eq!(text_of(&second, ".badge.cached").await, "cached");

    // Markup in an answer (the mock echoes it) is text, and runs nothing.
    let third = ask(client, PAYLOAD, 3).await;
    assert_eq!(text_of(&third, ".answer").await, format!("Echo: {PAYLOAD}"));
    assert_eq!(
        js(
            client,
            "return document.querySelectorAll('#answers img').length"
        )
        .await,
        Value::from(0)
    );
    assert_eq!(client.title().await.unwrap(), "chatgate playground");

    // Every request the page made went to its own origin.
    let urls = js(
        client,
        "return performance.getEntriesByType('resource').map(e => e.name)",
    )
    .await;
    let origin = js(client, "return location.origin").await;
    let origin = origin.as_str().unwrap();
    let urls = urls.as_array().unwrap();
    assert!(
        urls.len() >= 2,
        "the script, styles and API calls: {urls:?}"
    );
    for url in urls {
        let url = url.as_str().unwrap();
        assert!(
            url.starts_with(&format!("{origin}/")),
            "{url} left {origin}"
        );
    }

    let png = client.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("playground.png"), png).unwrap();
}

#[tokio::test]
async fn the_playground_files_carry_their_own_csp_and_every_other_route_keeps_default_src_none() {
    let app = spawn_app(&config()).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/playground.js", "text/javascript"),
        ("/playground.css", "text/css"),
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let header = |name: &str| res.headers()[name].to_str().unwrap().to_owned();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("content-security-policy"), PLAYGROUND_CSP, "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    }
    for path in ["/health", "/api/v1/models", "/nope"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            res.headers()["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'",
            "{path}"
        );
    }
}

#[tokio::test]
async fn without_playground_enabled_the_root_is_the_json_404() {
    let app = spawn_app("").await;
    for path in ["/", "/playground.js", "/playground.css"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

/// The shipped config files, as `APP_ENV=profile` loads them.
fn shipped(profile: &str) -> chatgate::Config {
    use chatgate::config::{Environment, LoadOptions};
    let opts = LoadOptions {
        config_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
        app_env: Some(profile.into()),
        extra_file: None,
        env: Environment::from_pairs([("CHATGATE_NO_SUCH".to_string(), String::new())]),
    };
    chatgate::config::load(&opts).unwrap_or_else(|p| panic!("{profile}: {p:?}"))
}

#[test]
fn the_shipped_development_config_turns_the_playground_on_and_staging_leaves_it_off() {
    assert!(shipped("development").playground.enabled);
    assert!(!shipped("staging").playground.enabled);
}
