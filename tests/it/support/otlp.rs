//! An OTLP/HTTP receiver on 127.0.0.1:0: accepts `POST /v1/traces`
//! (protobuf), decodes it with `opentelemetry-proto`'s generated types, and
//! keeps every span, flattened, plus every raw body (to search for text
//! that must never be exported).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;

/// One received span.
#[derive(Debug, Clone)]
pub struct Got {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// The OTLP `SpanKind` (2 server, 3 client).
    pub kind: i32,
    /// OTLP status code (0 unset, 1 ok, 2 error).
    pub status: i32,
    pub attrs: BTreeMap<String, String>,
    /// The resource's `service.name`.
    pub service: String,
}

impl Got {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Store {
    spans: Vec<Got>,
    bodies: Vec<Vec<u8>>,
}

pub struct Collector {
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

async fn receive(State(store): State<Arc<Mutex<Store>>>, body: Bytes) -> impl IntoResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut store = store.lock().unwrap();
    store.bodies.push(body.to_vec());
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                store.spans.push(Got {
                    name: span.name,
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    kind: span.kind,
                    status: span.status.map_or(0, |s| s.code),
                    attrs: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    // An empty ExportTraceServiceResponse: full success.
    (StatusCode::OK, Vec::new())
}

impl Collector {
    pub async fn start() -> Self {
        let store = Arc::new(Mutex::new(Store::default()));
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(store.clone())
            .layer(axum::middleware::map_response(
                |mut r: axum::response::Response| async move {
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        "application/x-protobuf".parse().unwrap(),
                    );
                    r
                },
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, store }
    }

    /// The `[tracing]` section pointing chatgate here.
    pub fn toml(&self) -> String {
        format!("[tracing]\notlp_endpoint = \"http://{}\"\n", self.addr)
    }

    pub fn spans(&self) -> Vec<Got> {
        self.store.lock().unwrap().spans.clone()
    }

    /// Every export body received so far, raw.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.store.lock().unwrap().bodies.clone()
    }

    /// Waits (generously) until `check` holds over the spans received, and returns them.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let ok = super::eventually(Duration::from_secs(20), || check(&self.spans())).await;
        let spans = self.spans();
        assert!(ok, "never received {what}; got {spans:#?}");
        spans
    }
}
