//! The one integration-test binary: the real app over real HTTP, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod cancellation;
mod cli;
mod compat;
mod config;
mod config_production;
mod content_blocks;
mod cost;
mod cost_redis;
mod errors;
mod finish_reasons;
mod first_run;
mod guard;
mod hostile_client;
mod hostile_upstream;
mod interaction_log;
mod logs;
mod metrics;
mod metrics_endpoint;
mod middleware;
mod openai_sdk;
mod operations;
mod prometheus_e2e;
mod rate_limits;
mod readiness;
mod redis_outage;
mod redis_state;
mod reload;
mod resilience;
mod resilience_circuit;
mod resilience_streams;
mod routes;
mod shutdown;
mod tracing;
