//! Live reload (issue 15): SIGHUP, file watch (ConfigMap swaps too) and the
//! admin API apply a new config without a restart; an invalid one changes
//! nothing; restart-only keys stay; state that did not change survives.

use std::path::Path;
use std::time::Duration;

use chatgate::config;
use serde_json::{Value, json};

use crate::support::binary::{Chatgate, Signal};
use crate::support::prometheus::{label_values, series};
use crate::support::reloadable::{ADMIN_KEY, Reloadable, admin_toml};
use crate::support::*;

/// A model on `up` with `prompt` as its system prompt.
fn model_toml(up: &Upstream, prompt: &str) -> String {
    format!(
        "{}\n[models.default]\ntargets = [\"p:m1\"]\nsystem_prompt = \"{prompt}\"\n",
        provider_toml("p", "openai", up)
    )
}

/// The system prompt of the last request `up` received.
fn last_system_prompt(up: &Upstream) -> String {
    let requests = up.requests();
    let body = &requests.last().unwrap().body;
    body["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn an_admin_reload_applies_a_changed_system_prompt_to_what_the_upstream_receives() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]);
    let extra = |prompt| format!("{}{}", admin_toml(), model_toml(&up, prompt));
    let r = Reloadable::start(&extra("Old prompt.")).await;
    assert_eq!(
        r.app.chat(json!({"messages": say("x")})).await.status(),
        200
    );
    assert_eq!(last_system_prompt(&up), "Old prompt.");
    let before = r.admin(reqwest::Method::GET, "/admin/v1/config").await;
    let before: Value = before.json().await.unwrap();

    r.write(&extra("New prompt."));
    let (status, body) = r.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "reloaded");
    let hash = body["hash"].as_str().unwrap();
    assert_eq!(hash.len(), 12);
    assert_ne!(before["hash"], hash, "a new config has a new hash");

    assert_eq!(
        r.app.chat(json!({"messages": say("x")})).await.status(),
        200
    );
    assert_eq!(last_system_prompt(&up), "New prompt.");
    let m = r.app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "chatgate_config_reloads_total",
            &[("result", "success")]
        ),
        1.0
    );
    assert_eq!(
        series(&m, "chatgate_config_info", &[("hash", hash)]),
        Some(1.0)
    );
    let old = before["hash"].as_str().unwrap();
    assert_eq!(
        series(&m, "chatgate_config_info", &[("hash", old)]),
        None,
        "old hash series gone"
    );
    let after: Value = r
        .admin(reqwest::Method::GET, "/admin/v1/config")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["hash"], hash);
    assert_eq!(after["models"]["default"]["system_prompt"], "New prompt.");
}

/// The upstream attempts, tokens and chats `/metrics` shows for `model` on target `p:upstream`.
fn model_counts(m: &str, model: &str, upstream: &str) -> [f64; 3] {
    let target = [("provider", "p"), ("model", upstream)];
    [
        metric(m, "chatgate_upstream_requests_total", &target),
        metric(m, "chatgate_tokens_total", &target),
        metric(m, "chatgate_chat_requests_total", &[("model", model)]),
    ]
}

#[tokio::test]
async fn a_model_added_by_a_reload_is_counted_under_its_own_series_and_the_old_ones_keep_counting()
{
    let up = Upstream::openai().await;
    let first = format!("{}{}", admin_toml(), model_toml(&up, "P."));
    let r = Reloadable::start(&first).await;
    let chat = |model: &'static str| {
        up.push([Reply::text("hi")]);
        r.app.chat(json!({"model": model, "messages": say("x")}))
    };
    assert_eq!(chat("default").await.status(), 200);

    r.write(&format!("{first}[models.second]\ntargets = [\"p:m2\"]\n"));
    let (status, body) = r.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(chat("second").await.status(), 200);
    assert_eq!(chat("second").await.status(), 200);
    assert_eq!(chat("default").await.status(), 200);

    let m = r.app.metrics().await;
    let [attempts, tokens, chats] = model_counts(&m, "second", "m2");
    assert_eq!((attempts, chats), (2.0, 2.0), "{m}");
    assert!(tokens > 0.0, "{m}");
    let [attempts, _, chats] = model_counts(&m, "default", "m1");
    assert_eq!((attempts, chats), (2.0, 2.0), "{m}");
}

#[tokio::test]
async fn an_invalid_reload_changes_nothing_and_lists_every_problem() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]);
    let good = format!("{}{}", admin_toml(), model_toml(&up, "Kept."));
    let r = Reloadable::start(&good).await;
    let hash_before = r.app.metrics().await;
    r.write(&format!(
        "{good}\n[server]\nrequest_timeout = \"soon\"\n[chat]\nmax_messages = 0\n"
    ));
    let (status, body) = r.reload().await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config");
    assert!(
        body["error"]["request_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let problems = body["error"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    let text = serde_json::to_string(problems).unwrap();
    assert!(text.contains("server.request_timeout") && text.contains("chat.max_messages"));

    assert_eq!(
        r.app.chat(json!({"messages": say("x")})).await.status(),
        200
    );
    assert_eq!(last_system_prompt(&up), "Kept.");
    let m = r.app.metrics().await;
    assert_eq!(
        metric(&m, "chatgate_config_reloads_total", &[("result", "error")]),
        1.0
    );
    assert_eq!(
        label_values(&m, "chatgate_config_info", "hash"),
        label_values(&hash_before, "chatgate_config_info", "hash"),
        "the running config's hash stays"
    );
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_its_config_when_a_reload_removes_its_model() {
    let up = Upstream::openai().await;
    up.push([Reply::Delayed(
        Duration::from_millis(800),
        Box::new(Reply::text("slow answer")),
    )]);
    let with_extra_model = format!(
        "{}{}\n[models.extra]\ntargets = [\"p:m2\"]\n",
        admin_toml(),
        model_toml(&up, "P")
    );
    let r = Reloadable::start(&with_extra_model).await;
    let in_flight = {
        let client = r.app.client.clone();
        let url = r.app.url("/api/v1/chat");
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(KEY)
                .json(&json!({"model": "extra", "messages": say("x")}))
                .send()
                .await
                .unwrap()
        })
    };
    assert!(eventually(Duration::from_secs(5), || up.calls() == 1).await);
    r.write(&format!("{}{}", admin_toml(), model_toml(&up, "P")));
    assert_eq!(r.reload().await.0, 200);

    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["message"]["content"], "slow answer");
    let now = r
        .app
        .chat(json!({"model": "extra", "messages": say("x")}))
        .await;
    assert_eq!(now.status(), 404, "new requests see the new config");
}

#[tokio::test]
async fn rate_limit_state_survives_a_reload_that_keeps_the_rate() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]);
    let extra = |prompt| format!("{}{}{}", admin_toml(), model_toml(&up, prompt), ip_limit(2));
    let r = Reloadable::start(&extra("A")).await;
    for _ in 0..2 {
        assert_eq!(
            r.app.chat(json!({"messages": say("x")})).await.status(),
            200
        );
    }
    r.write(&extra("B"));
    assert_eq!(
        r.reload().await.0,
        200,
        "admin calls are not per-IP limited"
    );
    assert_eq!(
        r.app.chat(json!({"messages": say("x")})).await.status(),
        429,
        "the spent bucket carried over"
    );
}

#[tokio::test]
async fn admin_routes_are_404_without_an_admin_key_and_401_without_the_right_one() {
    let app = spawn_app("").await;
    for (method, path) in [
        ("GET", "/admin/v1/config"),
        ("POST", "/admin/v1/reload"),
        ("GET", "/admin"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = app
            .client
            .request(m, app.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
    }

    let app = spawn_app(&admin_toml()).await;
    for (method, path) in [("GET", "/admin/v1/config"), ("POST", "/admin/v1/reload")] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let none = app
            .client
            .request(m.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a key");
        let body: Value = none.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        for key in [KEY, "wrong"] {
            let r = app
                .client
                .request(m.clone(), app.url(path))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {key}");
        }
        let r = app
            .client
            .request(m, app.url(path))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        // An app built from a Config alone has no layers to reload: 422.
        let expected = if method == "GET" { 200 } else { 422 };
        assert_eq!(r.status(), expected, "{method} {path} with the admin key");
    }
    let config: Value = app
        .client
        .get(app.url("/admin/v1/config"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = config.to_string();
    assert!(
        !text.contains(&config::sha256_hex(ADMIN_KEY)),
        "no key digest shown"
    );
    assert_eq!(config["admin"]["keys"]["ops"]["sha256"], "[REDACTED]");
}

#[test]
fn production_refuses_an_admin_key_that_is_a_client_key_or_the_dev_key() {
    let same = format!(
        "[admin.keys.ops]\nsha256 = \"{}\"\n",
        config::sha256_hex(KEY)
    );
    let problems = load_config_profile("production", &same, &[]).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.to_string().contains("admin.keys.ops")),
        "{problems:?}"
    );
    let dev = format!(
        "[admin.keys.ops]\nsha256 = \"{}\"\n",
        config::sha256_hex("dev-key")
    );
    let problems = load_config_profile("production", &dev, &[]).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.to_string().contains("admin.keys.ops"))
    );
}

/// The binary, with `extra` in `development.toml` of its config dir.
async fn binary(extra: &str) -> (Chatgate, crate::support::binary::Running) {
    let mut cmd = Chatgate::with_config(extra);
    cmd.envs(upstream_env());
    let running = cmd.spawn().await;
    (cmd, running)
}

async fn chat_binary(running: &crate::support::binary::Running) -> u16 {
    reqwest::Client::new()
        .post(running.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .json(&json!({"messages": say("x")}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sighup_reloads_the_config_and_restart_only_keys_keep_their_value_with_a_warning() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]);
    let (cmd, running) = binary(&model_toml(&up, "Before HUP.")).await;
    assert_eq!(chat_binary(&running).await, 200);
    assert_eq!(last_system_prompt(&up), "Before HUP.");

    let changed = format!(
        "{}\n[server]\nhost = \"0.0.0.0\"\nheader_read_timeout = \"3s\"\n",
        model_toml(&up, "After HUP.")
    );
    std::fs::write(cmd.dir().join("development.toml"), changed).unwrap();
    running.signal(Signal::HUP);
    assert!(
        eventually(Duration::from_secs(20), || running
            .event("config reloaded")
            .is_some())
        .await,
        "{}",
        running.output()
    );
    assert_eq!(chat_binary(&running).await, 200);
    assert_eq!(last_system_prompt(&up), "After HUP.");
    let warned: Vec<String> = running
        .events()
        .iter()
        .filter(|e| e["level"] == "WARN" && e["key"].is_string())
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        warned,
        ["server.host", "server.header_read_timeout"],
        "{}",
        running.output()
    );
    let (_, out) = running.stop().await;
    assert!(out.contains("\"source\":\"signal\""), "{out}");
}

/// A Kubernetes ConfigMap volume: `development.toml -> ..data/development.toml`,
/// `..data -> ..<timestamp>`; an update writes a new timestamped folder and
/// renames a fresh `..data_tmp` symlink over `..data`.
fn configmap_swap(dir: &Path, version: &str, text: &str) {
    let folder = dir.join(format!("..{version}"));
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("development.toml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[tokio::test]
async fn a_configmap_symlink_swap_reloads_the_config_when_watch_is_on() {
    let up = Upstream::openai().await;
    up.push([Reply::text("hi")]);
    let text = |prompt| format!("[reload]\nwatch = true\n{}", model_toml(&up, prompt));
    let mut cmd = Chatgate::with_config("");
    cmd.envs(upstream_env());
    let dir = cmd.dir().to_owned();
    std::fs::remove_file(dir.join("development.toml")).unwrap();
    configmap_swap(&dir, "2024_01", &text("Version one."));
    std::os::unix::fs::symlink("..data/development.toml", dir.join("development.toml")).unwrap();
    let running = cmd.spawn().await;
    assert_eq!(chat_binary(&running).await, 200);
    assert_eq!(last_system_prompt(&up), "Version one.");

    configmap_swap(&dir, "2024_02", &text("Version two."));
    assert!(
        eventually(Duration::from_secs(20), || running
            .event("config reloaded")
            .is_some())
        .await,
        "{}",
        running.output()
    );
    assert_eq!(chat_binary(&running).await, 200);
    assert_eq!(last_system_prompt(&up), "Version two.");
    let reloads = running
        .events()
        .iter()
        .filter(|e| e["message"] == "config reloaded")
        .count();
    assert_eq!(reloads, 1, "one swap, one reload: {}", running.output());
    let (_, out) = running.stop().await;
    assert!(out.contains("\"source\":\"file\""), "{out}");
}
