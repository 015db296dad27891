//! chatgate: a small, fast, hard-to-break gateway between chat frontends and LLM providers.

pub mod app;
pub mod chat;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod interaction_log;
pub mod jwt;
pub mod limiter;
pub mod metrics;
pub mod middleware;
pub mod models;
pub mod providers;
pub mod redact;
pub mod resilience;
pub mod routes;
pub mod shutdown;
pub mod state;
pub mod telemetry;

pub use app::App;
pub use config::Config;
