//! Request ids: a valid incoming `x-request-id` (1–128 of `[A-Za-z0-9._-]`)
//! is kept; an invalid one is dropped here so tower-http sets a fresh UUID.

use axum::extract::Request;

use crate::headers::REQUEST_ID as HEADER;

pub fn is_valid(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub async fn drop_invalid(mut req: Request) -> Request {
    let headers = req.headers_mut();
    let valid = headers.get_all(HEADER).iter().count() == 1
        && headers.get(HEADER).is_some_and(|v| is_valid(v.as_bytes()));
    if !valid {
        headers.remove(HEADER);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn validity_follows_the_contract() {
        assert!(is_valid(b"abc-123_x.y"));
        assert!(is_valid(&[b'a'; 128]));
        assert!(!is_valid(&[b'a'; 129]));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"has space"));
        assert!(!is_valid(b"semi;colon"));
    }
}
