//! Configuration loading in-process: every layer and its precedence, merging,
//! durations, `.env`, which `CHATGATE_` variables are config keys, unknown
//! keys. Environments are injected maps (production's refusals: config_production.rs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chatgate::Config;
use chatgate::config::{Environment, LoadOptions, Problem, ProviderKind, load};
use secrecy::ExposeSecret;
use tempfile::TempDir;

/// A config folder holding `files` (name, TOML text).
fn config_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn env(pairs: &[(&str, &str)]) -> Environment {
    Environment::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// Loads as the binary does: `APP_ENV`, `CHATGATE_CONFIG_DIR` and `CHATGATE_CONFIG` from `vars`.
fn load_env(vars: &[(&str, &str)], cli_config: Option<PathBuf>) -> Result<Config, Vec<Problem>> {
    load(&LoadOptions::from_env(env(vars), cli_config))
}

fn load_dir(
    dir: &Path,
    app_env: &str,
    extra: Option<PathBuf>,
    vars: &[(&str, &str)],
) -> Result<Config, Vec<Problem>> {
    load(&LoadOptions {
        config_dir: dir.to_owned(),
        app_env: Some(app_env.into()),
        extra_file: extra,
        env: env(vars),
    })
}

fn paths(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(|p| p.path.clone()).collect()
}

#[test]
fn each_layer_overrides_every_layer_below_it() {
    // Each key is set in every layer up to one; the highest layer that sets it wins.
    let dir = config_dir(&[
        (
            "default.toml",
            "[server]\nport = 1001\nmax_body_bytes = 1001\nmax_concurrent_requests = 1001\nshutdown_grace = \"11s\"\n",
        ),
        (
            "development.toml",
            "[server]\nport = 1002\nmax_body_bytes = 1002\nmax_concurrent_requests = 1002\n",
        ),
        (
            "extra.toml",
            "[server]\nport = 1003\nmax_body_bytes = 1003\n",
        ),
    ]);
    let c = load_dir(
        dir.path(),
        "development",
        Some(dir.path().join("extra.toml")),
        &[("CHATGATE_SERVER__PORT", "1004")],
    )
    .unwrap();
    assert_eq!(c.server.port, 1004, "environment wins over --config");
    assert_eq!(
        c.server.max_body_bytes, 1003,
        "--config wins over the profile file"
    );
    assert_eq!(
        c.server.max_concurrent_requests, 1002,
        "the profile file wins over default.toml"
    );
    assert_eq!(
        c.server.shutdown_grace,
        Duration::from_secs(11),
        "default.toml wins over built-ins"
    );
    assert_eq!(
        c.server.request_timeout,
        Duration::from_secs(60),
        "built-in default when no layer sets it"
    );
}

#[test]
fn app_env_picks_the_profile_file() {
    let dir = config_dir(&[
        ("development.toml", "[server]\nport = 1\n"),
        ("staging.toml", "[server]\nport = 2\n"),
        ("production.toml", "[server]\nport = 3\n"),
    ]);
    let dir_s = dir.path().to_str().unwrap();
    let dev = load_env(&[("CHATGATE_CONFIG_DIR", dir_s)], None).unwrap();
    assert_eq!((dev.server.port, dev.profile.as_str()), (1, "development"));
    let staging = load_env(
        &[("CHATGATE_CONFIG_DIR", dir_s), ("APP_ENV", "staging")],
        None,
    )
    .unwrap();
    assert_eq!(
        (staging.server.port, staging.profile.as_str()),
        (2, "staging")
    );
    let bad = load_env(&[("CHATGATE_CONFIG_DIR", dir_s), ("APP_ENV", "prod")], None).unwrap_err();
    assert_eq!(paths(&bad), ["APP_ENV"]);
}

#[test]
fn chatgate_config_dir_moves_the_config_folder() {
    let dir = config_dir(&[("default.toml", "[server]\nport = 4242\n")]);
    let c = load_env(
        &[("CHATGATE_CONFIG_DIR", dir.path().to_str().unwrap())],
        None,
    )
    .unwrap();
    assert_eq!(c.server.port, 4242);
}

#[test]
fn chatgate_config_adds_a_layer_and_dash_dash_config_replaces_it() {
    let dir = config_dir(&[
        ("default.toml", "[server]\nport = 1\n"),
        ("from_env.toml", "[server]\nport = 2\n"),
        ("from_cli.toml", "[server]\nport = 3\n"),
    ]);
    let vars = [
        (
            "CHATGATE_CONFIG_DIR",
            dir.path().to_str().unwrap().to_owned(),
        ),
        (
            "CHATGATE_CONFIG",
            dir.path()
                .join("from_env.toml")
                .to_str()
                .unwrap()
                .to_owned(),
        ),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(load_env(&vars, None).unwrap().server.port, 2);
    let cli = Some(dir.path().join("from_cli.toml"));
    assert_eq!(load_env(&vars, cli).unwrap().server.port, 3);
}

#[test]
fn missing_profile_files_are_skipped() {
    let empty = config_dir(&[]);
    for profile in ["development", "staging"] {
        let c = load_dir(empty.path(), profile, None, &[]).unwrap();
        assert_eq!(c.server.port, 8080);
        assert_eq!(
            c.models["default"].targets,
            ["mock:echo"],
            "built-in mock model"
        );
        assert_eq!(c.providers["mock"].kind, ProviderKind::Mock);
    }
}

#[test]
fn dash_dash_config_naming_a_missing_file_is_an_error() {
    let dir = config_dir(&[]);
    let missing = dir.path().join("nope.toml");
    let problems = load_dir(dir.path(), "development", Some(missing), &[]).unwrap_err();
    assert_eq!(paths(&problems), ["--config"]);
    assert!(problems[0].message.contains("nope.toml"), "{}", problems[0]);
}

#[test]
fn maps_merge_key_by_key_across_layers() {
    let dir = config_dir(&[
        (
            "default.toml",
            "[providers.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\ntimeout = \"7s\"\n\
             [models.default]\ntargets = [\"up:m\"]\nmax_tokens = 10\n",
        ),
        (
            "development.toml",
            "[providers.up]\ntimeout = \"8s\"\n[providers.other]\nkind = \"mock\"\n\
             [models.default]\nsystem_prompt = \"Be brief.\"\n",
        ),
    ]);
    let c = load_dir(
        dir.path(),
        "development",
        None,
        &[("CHATGATE_PROVIDERS__UP__MAX_RETRIES", "5")],
    )
    .unwrap();
    let up = &c.providers["up"];
    assert_eq!(up.kind, ProviderKind::Openai, "kept from default.toml");
    assert_eq!(
        up.base_url.as_deref(),
        Some("http://127.0.0.1:9/v1"),
        "kept from default.toml"
    );
    assert_eq!(
        up.timeout,
        Duration::from_secs(8),
        "overridden by the profile"
    );
    assert_eq!(up.max_retries, 5, "overridden by the environment");
    assert_eq!(
        c.providers["other"].kind,
        ProviderKind::Mock,
        "added by the profile"
    );
    assert!(
        c.providers.contains_key("mock"),
        "the built-in provider stays"
    );
    let m = &c.models["default"];
    assert_eq!(
        (
            m.targets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            m.max_tokens.map(std::num::NonZeroU32::get)
        ),
        (vec!["up:m".to_owned()], Some(10))
    );
    assert_eq!(m.system_prompt.as_deref(), Some("Be brief."));
}

#[test]
fn a_list_in_a_higher_layer_replaces_the_lower_one_whole() {
    let dir = config_dir(&[
        (
            "default.toml",
            "[providers.a]\nkind = \"mock\"\n[providers.b]\nkind = \"mock\"\n\
             [models.x]\ntargets = [\"a:1\", \"b:2\", \"a:3\"]\n",
        ),
        ("development.toml", "[models.x]\ntargets = [\"b:9\"]\n"),
    ]);
    let c = load_dir(dir.path(), "development", None, &[]).unwrap();
    assert_eq!(c.models["x"].targets, ["b:9"]);
    let vars = [("CHATGATE_MODELS__X__TARGETS", r#"["a:7", "a:8"]"#)];
    let c = load_dir(dir.path(), "development", None, &vars).unwrap();
    assert_eq!(
        c.models["x"].targets,
        ["a:7", "a:8"],
        "from the environment, whole"
    );
}

#[test]
fn durations_are_human_readable_strings() {
    let dir = config_dir(&[(
        "default.toml",
        "[server]\nrequest_timeout = \"5m\"\nshutdown_grace = \"250ms\"\n\
         [providers.mock]\nbackoff_initial = \"20ms\"\nbackoff_max = \"1h\"\n",
    )]);
    let vars = [("CHATGATE_PROVIDERS__MOCK__CIRCUIT_COOLDOWN", "90s")];
    let c = load_dir(dir.path(), "development", None, &vars).unwrap();
    assert_eq!(c.server.request_timeout, Duration::from_secs(300));
    assert_eq!(c.server.shutdown_grace, Duration::from_millis(250));
    let mock = &c.providers["mock"];
    assert_eq!(mock.backoff_initial, Duration::from_millis(20));
    assert_eq!(mock.backoff_max, Duration::from_secs(3600));
    assert_eq!(mock.circuit_cooldown, Duration::from_secs(90));

    let bad = config_dir(&[("default.toml", "[server]\nrequest_timeout = \"soon\"\n")]);
    let problems = load_dir(bad.path(), "development", None, &[]).unwrap_err();
    assert_eq!(paths(&problems), ["server.request_timeout"], "{problems:?}");
}

#[test]
fn dotenv_fills_unset_variables_and_never_overrides_set_ones() {
    let dir = config_dir(&[]);
    let dotenv = dir.path().join(".env");
    std::fs::write(
        &dotenv,
        "CHATGATE_SERVER__PORT=2222\nCHATGATE_SERVER__MAX_BODY_BYTES=3333\nAPP_ENV=staging\n",
    )
    .unwrap();
    let environment = env(&[("CHATGATE_SERVER__PORT", "1111")]).with_dotenv(&dotenv);
    assert_eq!(environment.get("CHATGATE_SERVER__PORT"), Some("1111"));
    let mut opts = LoadOptions::from_env(environment, None);
    opts.config_dir = dir.path().to_owned();
    let c = load(&opts).unwrap();
    assert_eq!(c.server.port, 1111, "the variable already set wins");
    assert_eq!(c.server.max_body_bytes, 3333, "unset, so filled from .env");
    assert_eq!(c.profile.as_str(), "staging", "APP_ENV comes from .env too");
}

#[test]
fn chatgate_variables_that_are_not_config_keys_are_ignored() {
    let dir = config_dir(&[("layer.toml", "[server]\nport = 5555\n")]);
    let layer = dir.path().join("layer.toml");
    let vars = [
        ("CHATGATE_CONFIG_DIR", dir.path().to_str().unwrap()),
        ("CHATGATE_CONFIG", layer.to_str().unwrap()),
        ("CHATGATE_REDIS_URL", "redis://:hunter2@127.0.0.1:6379"),
        ("CHATGATE_FRONTEND_KEY", "frontend-secret"),
        ("CHATGATE_DEV_KEY_HINT", "dev-key"),
        ("CHATGATE_", "x"),
    ];
    let c = load_env(&vars, None).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(c.server.port, 5555);
}

#[test]
fn an_unknown_key_in_a_file_is_an_error_naming_its_key_path() {
    let dir = config_dir(&[("default.toml", "[server]\nprot = 1\n")]);
    let problems = load_dir(dir.path(), "development", None, &[]).unwrap_err();
    assert_eq!(paths(&problems), ["server.prot"], "{problems:?}");

    let dir = config_dir(&[(
        "default.toml",
        "[providers.mock]\nkind = \"mock\"\napi_key = \"x\"\n",
    )]);
    let problems = load_dir(dir.path(), "development", None, &[]).unwrap_err();
    assert_eq!(paths(&problems), ["providers.mock.api_key"], "{problems:?}");
}

#[test]
fn an_unknown_config_key_in_the_environment_is_an_error_naming_its_key_path() {
    let dir = config_dir(&[]);
    let vars = [("CHATGATE_SERVER__PROT", "1")];
    let problems = load_dir(dir.path(), "development", None, &vars).unwrap_err();
    assert_eq!(paths(&problems), ["server.prot"], "{problems:?}");
}

#[test]
fn a_numeric_looking_secret_from_the_environment_keeps_its_exact_text() {
    let dir = config_dir(&[]);
    let vars = [("CHATGATE_METRICS__TOKEN", "0918273645")];
    let c = load_dir(dir.path(), "development", None, &vars).unwrap_or_else(|p| {
        assert!(
            !format!("{p:?}").contains("918273645"),
            "secret echoed: {p:?}"
        );
        panic!("numeric token refused: {p:?}")
    });
    let token = c
        .metrics
        .token
        .as_ref()
        .map(|t| t.expose_secret().to_owned());
    assert_eq!(token.as_deref(), Some("0918273645"), "leading zero kept");
}

#[test]
fn an_invalid_logging_level_is_a_problem_instead_of_silence() {
    let dir = config_dir(&[]);
    for level in ["verbose", "warnn"] {
        let vars = [("CHATGATE_LOGGING__LEVEL", level)];
        let problems = load_dir(dir.path(), "development", None, &vars).unwrap_err();
        assert_eq!(paths(&problems), ["logging.level"], "{problems:?}");
        assert!(problems[0].message.contains(level), "{}", problems[0]);
    }
    let ok = [("CHATGATE_LOGGING__LEVEL", "info,chatgate=debug")];
    load_dir(dir.path(), "development", None, &ok).unwrap();
}

#[test]
fn every_bad_value_is_reported_at_once_in_the_users_words() {
    let dir = config_dir(&[(
        "default.toml",
        "[server]\nprot = 1\nshutdown_grace = 30\n[models.default]\ntargets = [\"mock:echo\", \"nocolon\"]\nmax_token = 5\n",
    )]);
    let vars = [
        ("CHATGATE_SERVER__PORT", "abc"),
        ("CHATGATE_RATE_LIMIT__PER_IP_BURST", "0"),
        ("CHATGATE_SERVER__REQUEST_TIMEOUT", "soon"),
    ];
    let problems = load_dir(dir.path(), "development", None, &vars).unwrap_err();
    let mut got = paths(&problems);
    got.sort();
    assert_eq!(
        got,
        [
            "models.default.max_token",
            "models.default.targets[1]",
            "rate_limit.per_ip_burst",
            "server.port",
            "server.prot",
            "server.request_timeout",
            "server.shutdown_grace",
        ],
        "{problems:#?}"
    );
    let line = |path: &str| {
        problems
            .iter()
            .find(|p| p.path == path)
            .map(ToString::to_string)
            .unwrap()
    };
    assert_eq!(
        line("server.port"),
        "CHATGATE_SERVER__PORT (server.port): expected a port number (0-65535), got \"abc\""
    );
    assert!(line("server.request_timeout").starts_with("CHATGATE_SERVER__REQUEST_TIMEOUT"));
    assert!(line("server.request_timeout").contains("such as \"60s\""));
    assert!(line("server.shutdown_grace").contains("such as \"60s\""));
    assert!(line("rate_limit.per_ip_burst").contains("at least 1"));
    assert!(line("models.default.max_token").contains("did you mean `max_tokens`?"));
    assert!(line("server.prot").contains("did you mean `port`?"));
    assert!(line("models.default.targets[1]").contains("provider:model"));
    for p in &problems {
        assert!(!p.to_string().contains("``"), "doubled backticks: {p}");
    }
}

#[test]
fn a_near_miss_variable_name_suggests_the_right_variable() {
    let dir = config_dir(&[]);
    let vars = [("CHATGATE_MODELS__DEFAULT__MAX_TOKEN", "5")];
    let problems = load_dir(dir.path(), "development", None, &vars).unwrap_err();
    assert_eq!(
        problems[0].to_string(),
        "CHATGATE_MODELS__DEFAULT__MAX_TOKEN (models.default.max_token): unknown key; \
         did you mean CHATGATE_MODELS__DEFAULT__MAX_TOKENS?"
    );
}
