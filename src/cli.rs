//! The command line: serve (default), `check-config`, `hash-key`, `healthcheck`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Environment, LoadOptions, Problem};
use crate::{App, shutdown, telemetry};

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
    /// Load and validate the effective config; print it with secrets redacted.
    CheckConfig,
    /// Print the SHA-256 hex of an API key, for `auth.keys.<id>.sha256`.
    HashKey { key: String },
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
        Some(Command::HashKey { key }) => {
            println!("{}", config::sha256_hex(key));
            ExitCode::SUCCESS
        }
        Some(Command::CheckConfig) => match load(&cli, env) {
            Ok(config) => match serde_json::to_string_pretty(&config) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("chatgate: cannot print the config: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(problems) => report(&problems),
        },
        Some(Command::Healthcheck) => match load(&cli, env) {
            Ok(config) => runtime(|| healthcheck(config.server.port)),
            Err(problems) => report(&problems),
        },
        None => {
            let rust_log = env.get("RUST_LOG").map(str::to_owned);
            match load(&cli, env) {
                Ok(config) => {
                    let _flush_on_exit = telemetry::init(&config.logging, rust_log.as_deref());
                    runtime(|| serve(config))
                }
                Err(problems) => report(&problems),
            }
        }
    }
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

async fn serve(config: Config) -> ExitCode {
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("chatgate: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    let client = reqwest::Client::builder()
        .timeout(HEALTHCHECK_TIMEOUT)
        .build();
    match client {
        Ok(client) => match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
            Ok(r) => {
                eprintln!("chatgate: {url} answered {}", r.status());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("chatgate: {url} unreachable: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("chatgate: {e}");
            ExitCode::FAILURE
        }
    }
}
