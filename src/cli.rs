//! The command line: serve (default), `check-config`, `hash-key`, `healthcheck`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Environment, LoadOptions, Problem};
use crate::{App, otel, shutdown, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "chatgate",
    version,
    about = "A gateway between chat frontends and LLM providers"
)]
pub struct Cli {
    /// Add FILE as a config layer (same as CHATGATE_CONFIG=FILE).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and check the effective config; print it (TOML) with secrets redacted.
    CheckConfig {
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Print the SHA-256 hex of an API key, for `auth.keys.<id>.sha256`.
    /// Without KEY, the key is read from standard input (keeps it out of shell
    /// history and `ps`).
    HashKey { key: Option<String> },
    /// Exit 0 when the local server's /health answers (for container health checks).
    Healthcheck,
}

/// Timeout of the `healthcheck` request.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

fn load(cli: &Cli, env: Environment) -> Result<Config, Vec<Problem>> {
    config::load(&LoadOptions::from_env(env, cli.config.clone()))
}

fn report(problems: &[Problem]) -> ExitCode {
    eprintln!(
        "chatgate: invalid configuration ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        eprintln!("  {p}");
    }
    ExitCode::from(2)
}

/// Runs the command line with the process environment (plus `.env`).
pub fn main(cli: Cli) -> ExitCode {
    let env = Environment::from_process();
    match &cli.command {
        Some(Command::HashKey { key }) => hash_key(key.as_deref()),
        Some(Command::CheckConfig { json }) => match load(&cli, env) {
            Ok(config) => check_config(&config, *json),
            Err(problems) => report(&problems),
        },
        Some(Command::Healthcheck) => match load(&cli, env) {
            Ok(config) => runtime(|| healthcheck(config.server.port)),
            Err(problems) => report(&problems),
        },
        None => {
            let rust_log = env.get("RUST_LOG").map(str::to_owned);
            // Kept for reloads: the same layers and environment snapshot.
            let opts = LoadOptions::from_env(env, cli.config.clone());
            match config::load(&opts) {
                Ok(config) => {
                    let refusals = config.start_refusals();
                    if !refusals.is_empty() {
                        return report(&refusals);
                    }
                    runtime(|| async move {
                        // Inside the runtime: the span exporter runs on it.
                        let traces = match otel::start(&config.tracing) {
                            Ok(traces) => traces,
                            Err(e) => {
                                eprintln!("chatgate: {e}");
                                return ExitCode::FAILURE;
                            }
                        };
                        let (tracer, drain) = traces.map(|t| (t.tracer, t.drain)).unzip();
                        let _flush_on_exit =
                            telemetry::init(&config.logging, rust_log.as_deref(), tracer);
                        let sources = &config.sources;
                        tracing::info!(
                            layers = %sources.describe(),
                            profile = config.profile.as_str(),
                            "config loaded"
                        );
                        for warning in &sources.warnings {
                            tracing::warn!("{warning}");
                        }
                        if let Some(url) = config.tracing.otlp_endpoint.traces_url() {
                            tracing::info!(%url, sample_ratio = config.tracing.sample_ratio.get(), "exporting traces");
                        }
                        let code = serve(config, opts).await;
                        if let Some(drain) = drain {
                            drain.finish().await;
                        }
                        code
                    })
                }
                Err(problems) => report(&problems),
            }
        }
    }
}

/// Prints the effective config (TOML, or JSON with `--json`) on stdout; the
/// layers read and any warning on stderr.
fn check_config(config: &Config, json: bool) -> ExitCode {
    eprintln!("chatgate: layers read: {}", config.sources.describe());
    for warning in &config.sources.warnings {
        eprintln!("chatgate: warning: {warning}");
    }
    for refusal in config.start_refusals() {
        eprintln!("chatgate: warning: serving refuses this config: {refusal}");
    }
    let text = if json {
        serde_json::to_string_pretty(config).map_err(|e| e.to_string())
    } else {
        toml::to_string(config).map_err(|e| e.to_string())
    };
    match text {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chatgate: cannot print the config: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `hash-key [KEY]`: the key from the argument, else from standard input
/// (one line; its line ending is not part of the key).
fn hash_key(key: Option<&str>) -> ExitCode {
    let key = match key {
        Some(key) => key.to_owned(),
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("Key to hash (then Enter): ");
            }
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("chatgate: cannot read the key from standard input: {e}");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    if key.is_empty() {
        eprintln!("chatgate: no key given (pass it as an argument or on standard input)");
        return ExitCode::from(2);
    }
    println!("{}", config::sha256_hex(&key));
    ExitCode::SUCCESS
}

fn runtime<F: std::future::Future<Output = ExitCode>>(f: impl FnOnce() -> F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("chatgate: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, opts: LoadOptions) -> ExitCode {
    let app = match App::build_reloadable(config, Some(opts), axum::Router::new()).await {
        Ok(app) => app,
        Err(crate::app::BuildError::Config(problems)) => {
            tracing::error!(
                problems = problems.len(),
                "cannot start: invalid configuration"
            );
            return report(&problems);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("chatgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    shutdown::reload_on_hangup(app.reload_handle());
    match app.run(shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(port: u16) -> ExitCode {
    let url = format!("http://127.0.0.1:{port}/health");
    let client = match reqwest::Client::builder()
        .timeout(HEALTHCHECK_TIMEOUT)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("chatgate: cannot build the HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!(
                "chatgate: healthcheck failed: {url} answered status {}",
                r.status().as_u16()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("chatgate: healthcheck failed: {url}: {}", failure_cause(&e));
            ExitCode::FAILURE
        }
    }
}

/// Why a request failed, in a few words (reqwest's own message hides the cause).
fn failure_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {}s", HEALTHCHECK_TIMEOUT.as_secs());
    }
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (is chatgate running on this port?)".into()
                }
                std::io::ErrorKind::TimedOut => {
                    format!("timed out after {}s", HEALTHCHECK_TIMEOUT.as_secs())
                }
                _ => io.to_string(),
            };
        }
        source = err.source();
    }
    if e.is_connect() {
        "cannot connect".into()
    } else {
        e.to_string()
    }
}
