//! Request headers over [`MAX_HEADER_BYTES`] get the contract's 431 JSON
//! from us. hyper's own limits (`app::HYPER_HEAD_LIMIT`) sit above this one,
//! so only a head too large to parse at all gets hyper's bodiless 431.

use axum::extract::Request;

/// The most header bytes (names and values) a request may carry: ample for
/// any real client (cookies, tokens), far below what would cost memory.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The size of a request's headers as HTTP/1.1 spells them (`name: value\r\n`).
fn header_bytes(req: &Request) -> usize {
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Whether `req` gets `ApiError::HeadersTooLarge` (by `error_body`, the layer that renders errors).
pub fn oversized(req: &Request) -> bool {
    header_bytes(req) > MAX_HEADER_BYTES
}
