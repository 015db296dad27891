//! Per-IP, per-key and per-end-user rate limits on `/api/v1`, decided by the
//! configured `Limiter` (memory or Redis). 429 carries `Retry-After` in whole
//! seconds and a message naming the limit (per-IP, per-key or per-user).

use axum::http::Extensions;

use crate::context::{ClientIp, EndUser, KeyId};
use crate::error::{ApiError, RateLimitScope};
use crate::limiter::{Bucket, Decision};
use crate::state::AppState;

async fn enforce(state: &AppState, bucket: Bucket<'_>) -> Result<(), ApiError> {
    match state.limiter.check(bucket).await {
        Decision::Allow => Ok(()),
        Decision::Deny { retry_after } => {
            state.metrics.rate_limited(bucket.scope());
            let scope = match bucket {
                Bucket::Ip(_) => RateLimitScope::PerIp,
                Bucket::Key(_) => RateLimitScope::PerKey,
                Bucket::User { .. } => RateLimitScope::PerUser,
            };
            Err(ApiError::RateLimited {
                retry_after,
                scope: Some(scope),
            })
        }
        Decision::Unavailable => Err(ApiError::Overloaded),
    }
}

/// The client IP's bucket (IPv6 by prefix; before auth, so unauthenticated floods are limited too).
pub async fn per_ip(state: &AppState, request: &Extensions) -> Result<(), ApiError> {
    if let Some(ClientIp(ip)) = request.get::<ClientIp>().copied() {
        let bucket = Bucket::client_ip(ip, state.config.rate_limit.ipv6_prefix);
        enforce(state, bucket).await?;
    }
    Ok(())
}

/// The client key's bucket, for keys with a `requests_per_minute`; for a
/// JWT, also the end user's bucket, for IdPs with a per-subject rate.
pub async fn per_key(state: &AppState, request: &Extensions) -> Result<(), ApiError> {
    if let Some(KeyId(id)) = request.get::<KeyId>() {
        enforce(state, Bucket::Key(id)).await?;
    }
    if let Some(user) = request.get::<EndUser>() {
        let bucket = Bucket::User {
            idp: &user.idp,
            user: &user.hash,
        };
        enforce(state, bucket).await?;
    }
    Ok(())
}
