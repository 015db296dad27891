//! chatgate: a small, fast, hard-to-break gateway between chat frontends and LLM providers.

pub mod app;
pub mod audit;
pub mod budget;
pub mod cache;
pub mod canary;
pub mod chat;
pub mod cli;
pub mod config;
pub mod context;
pub mod cost;
pub mod dispatch;
pub mod error;
pub mod faq;
pub mod guard;
pub mod headers;
pub mod interaction_log;
pub mod jsonl;
pub mod jwt;
pub mod limiter;
pub mod meters;
pub mod middleware;
pub mod models;
pub mod otel;
pub mod providers;
pub mod redact;
pub mod redis_link;
pub mod reload;
pub mod resilience;
pub mod routes;
pub mod shutdown;
pub mod state;
pub mod telemetry;

pub use app::App;
pub use config::Config;
