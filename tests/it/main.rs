//! The one integration-test binary: the real app over real HTTP, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod anthropic_sdk;
mod cancellation;
mod cli;
mod compat;
mod config;
mod config_production;
mod content_blocks;
mod errors;
mod finish_reasons;
mod first_run;
mod hostile_client;
mod hostile_upstream;
mod interaction_log;
mod js_sdk;
mod logs;
mod messages;
mod metrics;
mod metrics_endpoint;
mod middleware;
mod openai_sdk;
mod operations;
mod rate_limits;
mod readiness;
mod redis_outage;
mod redis_state;
mod resilience;
mod resilience_circuit;
mod resilience_streams;
mod routes;
mod shutdown;
