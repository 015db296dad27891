//! HTTP plumbing shared by the OpenAI and Anthropic providers: the pooled
//! upstream client, send a JSON request, map transport failures and statuses
//! to `ProviderError`, read bodies with a size cap, and never keep an
//! upstream's raw error body.
//!
//! The client is hyper-util's pooled client over hyper-rustls, not reqwest:
//! reqwest re-parses every response's URL (its always-on redirect layer) and
//! stacks layers chatgate does not use; an upstream here never redirects.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{self, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{MAX_ANSWER_BYTES, ProviderError};
use crate::config::HttpApi;
use crate::resilience::backoff::parse_retry_after;

/// Most of an error body we look at for its error code.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An upstream's answer, its body still to read.
pub type Response = http::Response<Incoming>;

/// The shared, pooled client every HTTP provider uses (rustls, no OpenSSL):
/// a connect timeout of 5 s, idle connections kept 90 s (256 per host),
/// `TCP_NODELAY`, HTTP/2 where TLS negotiates it, and no redirects followed
/// (following one could carry the key elsewhere). Cheap to clone: one pool.
#[derive(Clone)]
pub struct Client(legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>);

impl Client {
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        http.enforce_http(false); // https URLs go through the TLS wrapper
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .build(https);
        Self(client)
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

/// A header value for a secret: marked sensitive so hyper/h2 never index or log it.
fn secret_header(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// One provider endpoint: the shared client, the URI (parsed once) and the
/// headers every request carries, the key among them (built once, marked
/// sensitive). The HTTP providers differ only in their bodies and readers.
pub struct Endpoint {
    client: Client,
    /// `None` for a base URL that is not a valid request URI (every request fails).
    uri: Option<Uri>,
    headers: HeaderMap,
}

impl Endpoint {
    /// `auth` turns the provider's key into its header; `fixed` adds headers of the API.
    pub fn new(
        client: Client,
        config: &HttpApi,
        path: &str,
        auth: impl FnOnce(&str) -> (HeaderName, String),
        fixed: HeaderMap,
    ) -> Self {
        let mut headers = fixed;
        if let Some(key) = &config.api_key {
            let (name, value) = auth(key.expose_secret());
            if let Some(value) = secret_header(&value) {
                headers.insert(name, value);
            }
        }
        // What reqwest sent for us before.
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("chatgate/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Self {
            client,
            uri: Uri::try_from(config.base_url.join(path).as_str()).ok(),
            headers,
        }
    }

    /// Sends `body` (with the request id) and returns the response if its status is 2xx.
    pub async fn post(
        &self,
        request_id: &str,
        body: &impl serde::Serialize,
    ) -> Result<Response, ProviderError> {
        let uri = self
            .uri
            .clone()
            .ok_or_else(|| ProviderError::Connect("the upstream URL is not usable".into()))?;
        let body = serde_json::to_vec(body)
            .map_err(|_| ProviderError::Connect("could not encode the request".into()))?;
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        *headers = self.headers.clone();
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert(crate::headers::REQUEST_ID, id);
        }
        crate::otel::inject(headers);
        let response = self.client.0.request(request).await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let detail = read_limited(response, MAX_ERROR_BODY)
            .await
            .ok()
            .and_then(|b| error_code(&b));
        Err(ProviderError::Status {
            status: status.as_u16(),
            retry_after,
            detail,
        })
    }
}

/// Reads and parses a whole 2xx JSON body.
pub async fn json_body<T: DeserializeOwned>(response: Response) -> Result<T, ProviderError> {
    let bytes = read_limited(response, MAX_ANSWER_BYTES).await?;
    crate::otel::response_model(&bytes);
    serde_json::from_slice(&bytes).map_err(|e| json_error("body", &e, bytes.len()))
}

/// An unusable-answer error for JSON that did not parse, by kind, position
/// and size only: serde's own message can quote the body (`invalid type:
/// string "…"`), and an upstream's body text must never reach a log.
pub fn json_error(what: &str, error: &serde_json::Error, len: usize) -> ProviderError {
    use serde_json::error::Category;
    let kind = match error.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not JSON",
        Category::Data => "JSON of an unexpected shape",
        Category::Eof => "truncated JSON",
    };
    ProviderError::Decode(format!(
        "{what} is {kind} (line {} column {}, {len} bytes)",
        error.line(),
        error.column()
    ))
}

/// Reads a body of at most `limit` bytes. Past it the response is dropped at
/// once, which closes the connection (hyper never pools a half-read body).
async fn read_limited(response: Response, limit: usize) -> Result<Vec<u8>, ProviderError> {
    let too_large = || ProviderError::Decode(format!("body larger than {limit} bytes"));
    let mut body = response.into_body();
    let declared = body.size_hint().exact().unwrap_or(0);
    if usize::try_from(declared).map_or(true, |n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame.map_err(body_broke)?.into_data() else {
            continue; // trailers
        };
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Maps a failure to get an answer (which may carry the URL, never a key) to ours.
fn transport(err: legacy::Error) -> ProviderError {
    // The connect timeout is an `io::Error` of kind `TimedOut` in the chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return ProviderError::Timeout;
        }
        source = e.source();
    }
    if err.is_connect() {
        ProviderError::Connect("could not connect".into())
    } else {
        ProviderError::Connect("connection broke".into())
    }
}

/// A body cut off mid-way: a broken connection, retried.
pub fn body_broke(_: hyper::Error) -> ProviderError {
    ProviderError::Connect("connection broke while reading the body".into())
}

/// The upstream's machine-readable error code (`error.code` or `error.type`),
/// kept only when it is a short identifier: safe to log and to name to clients.
fn error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| err.get("type").and_then(Value::as_str))?;
    let safe = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    safe.then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_keeps_identifiers_only() {
        assert_eq!(
            error_code(br#"{"error":{"code":"context_length_exceeded","message":"secret text"}}"#)
                .as_deref(),
            Some("context_length_exceeded")
        );
        assert_eq!(
            error_code(br#"{"type":"error","error":{"type":"invalid_request_error"}}"#).as_deref(),
            Some("invalid_request_error")
        );
        assert_eq!(
            error_code(br#"{"error":{"code":"has spaces and <html>"}}"#),
            None
        );
        assert_eq!(error_code(b"<html>oops</html>"), None);
    }

    #[test]
    fn json_errors_never_quote_the_body() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Shape {
            choices: Vec<u8>,
        }
        for body in [
            &br#"{"choices": "MARKER-in-a-string"}"#[..],
            br#"{"MARKER-as-a-key": 1, "choices": [300]}"#,
            b"MARKER not json at all",
            br#"{"choices": ["MARKER"#,
        ] {
            let Err(err) = serde_json::from_slice::<Shape>(body) else {
                panic!("parsed");
            };
            let ProviderError::Decode(message) = json_error("body", &err, body.len()) else {
                panic!("not a decode error");
            };
            assert!(!message.contains("MARKER"), "{message}");
            assert!(
                message.contains(&format!("{} bytes", body.len())),
                "{message}"
            );
        }
    }
}
