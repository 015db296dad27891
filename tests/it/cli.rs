//! The `chatgate` binary as users run it: the shipped config on a fresh clone,
//! the shipped profiles, `--config`, `.env`, `check-config` (redaction, every
//! problem at once), `hash-key` and `healthcheck`.

use std::path::Path;

use crate::support::cli::{Served, chatgate, fresh_clone, run};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const REDACTED: &str = "[REDACTED]";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// The lines of `text` that mention `needle`.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test]
async fn shipped_config_serves_the_mock_provider_to_the_dev_key_on_a_fresh_clone() {
    let clone = fresh_clone();
    let server = chatgate(clone.path())
        .env("CHATGATE_SERVER__PORT", "0")
        .env("CHATGATE_LOGGING__FORMAT", "json")
        .spawn()
        .await;
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    let client = reqwest::Client::new();
    let body = json!({"messages": [{"role": "user", "content": "Hello gateway"}]});
    let r = client
        .post(server.url("/api/v1/chat"))
        .bearer_auth("dev-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"]["content"], "Echo: Hello gateway");
    assert_eq!(v["provider"], "mock");

    let r = client
        .post(server.url("/api/v1/chat"))
        .bearer_auth("not-the-dev-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "only configured keys are accepted");
}

#[test]
fn shipped_development_profile_is_loopback_8080_with_readable_logs_and_the_dev_key() {
    let clone = fresh_clone();
    let v = run(chatgate(clone.path()).args(["check-config", "--json"])).json();
    assert_eq!(v["profile"], "development");
    assert_eq!(
        (&v["server"]["host"], &v["server"]["port"]),
        (&json!("127.0.0.1"), &json!(8080))
    );
    assert_eq!(v["logging"]["format"], "pretty");
    assert_eq!(v["providers"]["mock"]["kind"], "mock");
    assert_eq!(v["models"]["default"]["targets"], json!(["mock:echo"]));
    assert_eq!(v["auth"]["keys"]["dev"]["sha256"], REDACTED);
}

#[test]
fn shipped_production_profile_refuses_to_start_without_provider_and_client_keys() {
    let clone = fresh_clone();
    let out = run(chatgate(clone.path())
        .env("APP_ENV", "production")
        .env("CHATGATE_SERVER__PORT", "0"));
    assert!(!out.success(), "{out:?}");
    assert!(!out.stdout.contains("chatgate listening"), "{out:?}");
    for path in [
        "auth.keys.frontend.env",
        "providers.openai.api_key_env",
        "providers.anthropic.api_key_env",
    ] {
        assert_eq!(lines_with(&out.stderr, path).len(), 1, "{path}: {out:?}");
    }
}

#[test]
fn shipped_production_profile_loads_once_its_keys_are_set() {
    let clone = fresh_clone();
    let out = run(chatgate(clone.path())
        .args(["check-config", "--json"])
        .env("APP_ENV", "production")
        .env("OPENAI_API_KEY", "sk-openai-prod-secret-1")
        .env("ANTHROPIC_API_KEY", "sk-ant-prod-secret-2")
        .env("CHATGATE_FRONTEND_KEY", "frontend-prod-secret-3"));
    let v = out.json();
    assert_eq!(v["profile"], "production");
    assert_eq!(v["server"]["host"], "0.0.0.0");
    assert_eq!(v["logging"]["format"], "json");
    for secret in [
        "sk-openai-prod-secret-1",
        "sk-ant-prod-secret-2",
        "frontend-prod-secret-3",
    ] {
        assert!(!out.all().contains(secret), "{secret} printed");
    }

    let dev = run(chatgate(clone.path())
        .args(["check-config", "--json"])
        .env("APP_ENV", "production")
        .env("OPENAI_API_KEY", "sk-openai-prod-secret-1")
        .env("ANTHROPIC_API_KEY", "sk-ant-prod-secret-2")
        .env("CHATGATE_FRONTEND_KEY", "dev-key"));
    assert!(!dev.success(), "{dev:?}");
    assert_eq!(
        lines_with(&dev.stderr, "auth.keys.frontend").len(),
        1,
        "{dev:?}"
    );
}

#[test]
fn shipped_staging_profile_loads_with_json_logs() {
    let clone = fresh_clone();
    let v = run(chatgate(clone.path())
        .args(["check-config", "--json"])
        .env("APP_ENV", "staging"))
    .json();
    assert_eq!(v["profile"], "staging");
    assert_eq!(v["logging"]["format"], "json");
    assert_eq!(v["server"]["host"], "0.0.0.0");
}

#[test]
fn check_config_prints_the_effective_config_with_every_secret_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let hashed_key = "hashed-client-secret-key";
    let hash = hex::encode(Sha256::digest(hashed_key));
    write(
        dir.path(),
        "default.toml",
        &format!(
            "[auth.keys.hashed]\nsha256 = \"{hash}\"\n[auth.keys.fromenv]\nenv = \"CHATGATE_FRONTEND_KEY\"\n\
             [providers.openai]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"OPENAI_API_KEY\"\n\
             [models.default]\ntargets = [\"openai:gpt-4o-mini\"]\n[state]\nbackend = \"redis\"\n"
        ),
    );
    let secrets = [
        ("CHATGATE_FRONTEND_KEY", "frontend-env-secret-key"),
        ("OPENAI_API_KEY", "sk-openai-env-secret-key"),
        ("CHATGATE_METRICS__TOKEN", "metrics-scrape-secret-token"),
        (
            "CHATGATE_REDIS_URL",
            "redis://:redis-pass-secret@127.0.0.1:6379/0",
        ),
    ];
    let out = run(chatgate(dir.path())
        .args(["check-config", "--json"])
        .env("CHATGATE_CONFIG_DIR", dir.path())
        .env("CHATGATE_SERVER__PORT", "9100")
        .envs(secrets));
    let v = out.json();
    assert_eq!(
        v["server"]["port"], 9100,
        "the effective config, env layer included"
    );
    // A resolved secret shows as "[REDACTED]" or "[REDACTED] from VAR".
    let redacted = |section: &Value| {
        section
            .as_object()
            .unwrap()
            .values()
            .any(|x| x.as_str().is_some_and(|s| s.starts_with(REDACTED)))
    };
    assert_eq!(v["auth"]["keys"]["hashed"]["sha256"], REDACTED);
    assert_eq!(
        v["auth"]["keys"]["fromenv"]["env"], "CHATGATE_FRONTEND_KEY",
        "a name, not a secret"
    );
    assert!(
        redacted(&v["auth"]["keys"]["fromenv"]),
        "env-resolved client key: {v}"
    );
    assert!(redacted(&v["providers"]["openai"]), "provider key: {v}");
    assert_eq!(v["metrics"]["token"], REDACTED);
    assert!(redacted(&v["state"]), "redis URL: {v}");
    let all = out.all();
    for raw in [hash.as_str(), hashed_key, "redis-pass-secret"]
        .into_iter()
        .chain(secrets.iter().map(|(_, s)| *s))
    {
        assert!(!all.contains(raw), "{raw} printed:\n{all}");
    }
}

#[test]
fn check_config_reports_every_problem_at_once_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "default.toml",
        "[server]\nmax_body_bytes = 0\n[rate_limit]\nper_ip_burst = 0\n[models.default]\ntargets = [\"nowhere:x\"]\n\
         [chat]\nmax_messages = 0\n[state]\nbackend = \"redis\"\n",
    );
    let out = run(chatgate(dir.path())
        .args(["check-config", "--json"])
        .env("CHATGATE_CONFIG_DIR", dir.path())
        .env(
            "CHATGATE_REDIS_URL",
            "http://user:redis-url-secret@127.0.0.1",
        ));
    assert!(!out.success(), "{out:?}");
    assert_ne!(out.code, None, "exited, not killed");
    let paths = [
        "server.max_body_bytes",
        "rate_limit.per_ip_burst",
        "models.default.targets[0]",
        "chat.max_messages",
        "state.redis_url_env",
    ];
    for path in paths {
        assert_eq!(
            lines_with(&out.stderr, path).len(),
            1,
            "{path}: {}",
            out.stderr
        );
    }
    assert!(!out.all().contains("redis-url-secret"), "{out:?}");
    assert!(out.stdout.trim().is_empty(), "no config printed: {out:?}");
}

#[test]
fn an_unknown_key_in_a_config_file_fails_naming_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "extra.toml", "[server]\nprot = 1\n");
    let out = run(chatgate(dir.path()).args(["check-config", "--config", "extra.toml"]));
    assert!(!out.success(), "{out:?}");
    assert_eq!(lines_with(&out.stderr, "server.prot").len(), 1, "{out:?}");
}

#[test]
fn chatgate_variables_that_are_not_config_keys_do_not_trip_check_config() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "layer.toml", "[server]\nport = 5151\n");
    let out = run(chatgate(dir.path())
        .args(["check-config", "--json"])
        .env("CHATGATE_CONFIG_DIR", dir.path())
        .env("CHATGATE_CONFIG", dir.path().join("layer.toml"))
        .env("CHATGATE_REDIS_URL", "redis://127.0.0.1:6379")
        .env("CHATGATE_FRONTEND_KEY", "some-frontend-key"));
    assert_eq!(out.json()["server"]["port"], 5151);
}

#[test]
fn dotenv_in_the_working_directory_fills_variables_but_never_overrides_set_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".env",
        "CHATGATE_SERVER__PORT=7001\nCHATGATE_SERVER__MAX_BODY_BYTES=4242\nAPP_ENV=staging\n",
    );
    let v = run(chatgate(dir.path())
        .args(["check-config", "--json"])
        .env("CHATGATE_SERVER__PORT", "7002"))
    .json();
    assert_eq!(v["server"]["port"], 7002, "the variable already set wins");
    assert_eq!(v["server"]["max_body_bytes"], 4242, "filled from .env");
    assert_eq!(v["profile"], "staging", "APP_ENV from .env");
}

#[test]
fn dash_dash_config_adds_a_layer_that_wins_over_chatgate_config_and_loses_to_env() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "cli.toml",
        "[server]\nport = 1111\nmax_body_bytes = 11\n",
    );
    write(dir.path(), "env.toml", "[server]\nport = 2222\n");
    let port = |args: &[&str], vars: &[(&str, &str)]| {
        let v = run(chatgate(dir.path())
            .args(args)
            .arg("--json")
            .envs(vars.iter().copied()))
        .json();
        v["server"]["port"].clone()
    };
    let from_env = ("CHATGATE_CONFIG", "env.toml");
    assert_eq!(port(&["check-config"], &[from_env]), 2222);
    assert_eq!(
        port(&["check-config", "--config", "cli.toml"], &[from_env]),
        1111
    );
    assert_eq!(port(&["--config", "cli.toml", "check-config"], &[]), 1111);
    let over = ("CHATGATE_SERVER__PORT", "3333");
    assert_eq!(
        port(&["check-config", "--config", "cli.toml"], &[over]),
        3333
    );
}

#[test]
fn dash_dash_config_naming_a_missing_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(chatgate(dir.path()).args(["check-config", "--config", "absent.toml"]));
    assert!(!out.success(), "{out:?}");
    assert_eq!(lines_with(&out.stderr, "absent.toml").len(), 1, "{out:?}");
    let serve = run(chatgate(dir.path())
        .args(["--config", "absent.toml"])
        .env("CHATGATE_SERVER__PORT", "0"));
    assert!(!serve.success(), "serving refuses too: {serve:?}");
}

#[test]
fn hash_key_prints_the_sha256_hex_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(chatgate(dir.path()).args(["hash-key", "dev-key"]));
    assert!(out.success(), "{out:?}");
    assert_eq!(
        out.stdout,
        "7e9f8fd111802be56c379d597842e29b2cebd35ff2133d431a49fa556a18704e\n"
    );
    let key = "a longer key, with spaces ✓";
    let out = run(chatgate(dir.path()).args(["hash-key", key]));
    assert_eq!(out.stdout.trim(), hex::encode(Sha256::digest(key)));
}

#[test]
fn healthcheck_succeeds_against_a_running_server() {
    let clone = fresh_clone();
    let server = Served::start(
        chatgate(clone.path())
            .env("CHATGATE_SERVER__PORT", "0")
            .env("CHATGATE_LOGGING__FORMAT", "json"),
    );
    let port = server.addr.port().to_string();
    let out = run(chatgate(clone.path())
        .arg("healthcheck")
        .env("CHATGATE_SERVER__PORT", &port));
    assert!(out.success(), "{out:?}");
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again
    let out = run(chatgate(dir.path())
        .arg("healthcheck")
        .env("CHATGATE_SERVER__PORT", port.to_string()));
    assert!(!out.success(), "{out:?}");
    assert_ne!(out.code, None, "exited, not killed");
}

/// The parsed JSON log lines a served instance wrote before listening.
fn startup_logs(server: &Served) -> Vec<Value> {
    server
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn serving_logs_the_layers_it_read_and_warns_when_the_config_directory_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".env", "CHATGATE_SERVER__MAX_BODY_BYTES=4096\n");
    let server = Served::start(
        chatgate(dir.path())
            .env("CHATGATE_SERVER__PORT", "0")
            .env("CHATGATE_AUTH__ENABLED", "false")
            .env("CHATGATE_LOGGING__FORMAT", "json"),
    );
    let logs = startup_logs(&server);
    let loaded = logs
        .iter()
        .find(|l| l["message"] == "config loaded")
        .unwrap_or_else(|| panic!("no config loaded line: {logs:?}"));
    let layers = loaded["layers"].as_str().unwrap();
    for part in [
        "config/default.toml (missing, skipped)",
        ".env (1 variables set)",
        "4 CHATGATE_* variables",
    ] {
        assert!(layers.contains(part), "{part}: {layers}");
    }
    assert!(
        logs.iter().any(|l| l["level"] == "WARN"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("config directory config does not exist"))),
        "{logs:?}"
    );

    let out = run(chatgate(dir.path()).args(["check-config", "--json"]));
    let v = out.json();
    assert_eq!(v["layers"]["env_vars"], 1, "{v}");
    assert_eq!(v["layers"]["files"][0]["status"], "missing, skipped");
    assert!(
        out.stderr.contains("layers read: built-in defaults"),
        "{out:?}"
    );
    assert!(out.stderr.contains("does not exist"), "{out:?}");
}

#[test]
fn serving_with_auth_on_and_no_client_key_refuses_to_start_in_every_profile() {
    let dir = tempfile::tempdir().unwrap();
    for profile in ["development", "staging"] {
        let out = run(chatgate(dir.path())
            .env("APP_ENV", profile)
            .env("CHATGATE_SERVER__PORT", "0"));
        assert!(!out.success(), "{profile}: {out:?}");
        assert_ne!(out.code, None, "exited, not killed");
        assert!(!out.stdout.contains("chatgate listening"), "{out:?}");
        assert_eq!(lines_with(&out.stderr, "auth.keys").len(), 1, "{out:?}");
    }
    // The shipped development profile has the dev key, so it serves (first test above).
}

#[test]
fn a_targeted_provider_with_its_key_variable_unset_is_a_warning_outside_production() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "up.toml",
        "[providers.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"UP_API_KEY\"\n\
         [models.default]\ntargets = [\"up:m\"]\n",
    );
    let server = Served::start(
        chatgate(dir.path())
            .args(["--config", "up.toml"])
            .env("CHATGATE_SERVER__PORT", "0")
            .env("CHATGATE_AUTH__ENABLED", "false")
            .env("CHATGATE_LOGGING__FORMAT", "json"),
    );
    let logs = startup_logs(&server);
    assert!(
        logs.iter().any(|l| l["level"] == "WARN"
            && l["message"].as_str().is_some_and(|m| {
                m.contains("providers.up.api_key_env") && m.contains("UP_API_KEY is not set")
            })),
        "{logs:?}"
    );
}

#[test]
fn check_config_shows_resolved_base_urls_and_where_each_key_comes_from_as_toml_or_json() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "default.toml",
        "[providers.openai]\nkind = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n\
         [providers.claude]\nkind = \"anthropic\"\napi_key_env = \"ANTHROPIC_API_KEY\"\n\
         [models.default]\ntargets = [\"openai:gpt-4o-mini\", \"claude:claude-haiku-4-5\"]\n",
    );
    let cmd = |json: bool| {
        let mut cmd = chatgate(dir.path());
        cmd.arg("check-config")
            .env("CHATGATE_CONFIG_DIR", dir.path())
            .env("OPENAI_API_KEY", "sk-shown-nowhere-1");
        if json {
            cmd.arg("--json");
        }
        cmd
    };
    let out = run(&mut cmd(true));
    let v = out.json();
    let openai = &v["providers"]["openai"];
    assert_eq!(openai["base_url"], "https://api.openai.com/v1");
    assert_eq!(openai["api_key"], "[REDACTED] from OPENAI_API_KEY");
    let claude = &v["providers"]["claude"];
    assert_eq!(claude["base_url"], "https://api.anthropic.com/v1");
    assert_eq!(claude["api_key"], "missing (ANTHROPIC_API_KEY unset)");
    assert!(v["providers"]["mock"].get("base_url").is_none(), "{v}");
    assert!(openai.get("upstream").is_none() && openai.get("resolved").is_none());
    assert!(v["layers"]["files"].is_array(), "{v}");

    let toml = run(&mut cmd(false));
    assert!(toml.success(), "{toml:?}");
    assert!(
        toml.stdout
            .contains("api_key = \"[REDACTED] from OPENAI_API_KEY\""),
        "{toml:?}"
    );
    assert!(toml.stdout.contains("[layers]"), "{toml:?}");
    assert!(!toml.all().contains("sk-shown-nowhere-1"), "{toml:?}");
}

#[test]
fn hash_key_reads_the_key_from_standard_input_without_an_argument() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(chatgate(dir.path()).arg("hash-key").stdin("dev-key\n"));
    assert!(out.success(), "{out:?}");
    assert_eq!(
        out.stdout, "7e9f8fd111802be56c379d597842e29b2cebd35ff2133d431a49fa556a18704e\n",
        "the line ending is not part of the key"
    );

    let empty = run(chatgate(dir.path()).arg("hash-key"));
    assert!(!empty.success(), "an empty key is refused: {empty:?}");
}

#[tokio::test]
async fn healthcheck_names_the_cause_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused = run(chatgate(dir.path())
        .arg("healthcheck")
        .env("CHATGATE_SERVER__PORT", closed.to_string()));
    assert!(!refused.success(), "{refused:?}");
    assert!(refused.stderr.contains("connection refused"), "{refused:?}");

    // A server that answers 503 to everything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    let dir_path = dir.path().to_owned();
    let status = tokio::task::spawn_blocking(move || {
        run(chatgate(&dir_path)
            .arg("healthcheck")
            .env("CHATGATE_SERVER__PORT", port.to_string()))
    })
    .await
    .unwrap();
    server.abort();
    assert!(!status.success(), "{status:?}");
    assert!(status.stderr.contains("status 503"), "{status:?}");
}
