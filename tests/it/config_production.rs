//! The production profile's refusals, in-process: each unsafe change to a
//! valid production config is refused on its own, named by its key path.

use chatgate::Config;
use chatgate::config::{Environment, LoadOptions, Problem, load, sha256_hex};

/// Loads `default_toml` as the only file, in the production profile.
fn production(default_toml: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<Problem>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.toml"), default_toml).unwrap();
    load(&LoadOptions {
        config_dir: dir.path().to_owned(),
        app_env: Some("production".into()),
        extra_file: None,
        env: Environment::from_pairs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
    })
}

const PROD_KEY: &str = "prod-client-key-0123456789";

fn client_key_toml() -> String {
    format!(
        "[auth.keys.frontend]\nsha256 = \"{}\"\n",
        sha256_hex(PROD_KEY)
    )
}

const OPENAI_TOML: &str = "[providers.openai]\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\n\
    api_key_env = \"OPENAI_API_KEY\"\n[models.default]\ntargets = [\"openai:gpt-4o-mini\"]\n";

const OPENAI_ENV: (&str, &str) = ("OPENAI_API_KEY", "sk-prod-openai-secret");

/// Asserts exactly one problem, at `path`, and that its line names the path.
fn refused(result: Result<Config, Vec<Problem>>, path: &str) -> Problem {
    let problems = result.expect_err("production should refuse this config");
    assert_eq!(
        problems.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
        [path],
        "{problems:?}"
    );
    assert!(problems[0].to_string().starts_with(path));
    problems[0].clone()
}

#[test]
fn a_valid_production_config_loads() {
    let c = production(
        &format!("{}{OPENAI_TOML}", client_key_toml()),
        &[OPENAI_ENV],
    )
    .unwrap();
    assert_eq!(c.profile.as_str(), "production");
    assert!(c.providers["openai"].api_key().is_some());
}

#[test]
fn production_refuses_auth_disabled() {
    let toml = format!("{}{OPENAI_TOML}", client_key_toml());
    refused(
        production(&toml, &[OPENAI_ENV, ("CHATGATE_AUTH__ENABLED", "false")]),
        "auth.enabled",
    );
}

#[test]
fn production_refuses_a_config_without_client_keys() {
    refused(production(OPENAI_TOML, &[OPENAI_ENV]), "auth.keys");
}

#[test]
fn production_refuses_the_dev_key_stored_as_its_hash() {
    let toml = format!(
        "[auth.keys.dev]\nsha256 = \"{}\"\n{OPENAI_TOML}",
        sha256_hex("dev-key")
    );
    let p = refused(production(&toml, &[OPENAI_ENV]), "auth.keys.dev");
    assert!(p.message.contains("dev-key"), "{p}");
}

#[test]
fn production_refuses_the_dev_key_read_from_the_environment() {
    let toml = format!("[auth.keys.web]\nenv = \"WEB_KEY\"\n{OPENAI_TOML}");
    refused(
        production(&toml, &[OPENAI_ENV, ("WEB_KEY", "dev-key")]),
        "auth.keys.web",
    );
}

#[test]
fn production_refuses_a_model_targeting_the_mock_provider() {
    let toml = format!(
        "{}[models.default]\ntargets = [\"mock:echo\"]\n",
        client_key_toml()
    );
    refused(production(&toml, &[]), "models.default.targets[0]");
}

#[test]
fn production_refuses_a_provider_whose_key_variable_is_unset() {
    let toml = format!("{}{OPENAI_TOML}", client_key_toml());
    let p = refused(production(&toml, &[]), "providers.openai.api_key_env");
    assert!(p.message.contains("OPENAI_API_KEY"), "{p}");
}

#[test]
fn production_refuses_the_placeholders_of_env_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = Environment::from_pairs([("APP_ENV", "production")])
        .with_dotenv(&root.join(".env.example"));
    let mut opts = LoadOptions::from_env(env, None);
    opts.config_dir = root.join("config");
    let problems = load(&opts).unwrap_err();
    for path in [
        "auth.keys.frontend.env",
        "providers.openai.api_key_env",
        "providers.anthropic.api_key_env",
    ] {
        let p = problems
            .iter()
            .find(|p| p.path == path)
            .unwrap_or_else(|| panic!("{path}: {problems:?}"));
        assert!(p.message.contains("placeholder"), "{p}");
    }
}
