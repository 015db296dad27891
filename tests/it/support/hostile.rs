//! A hostile upstream: raw HTTP/1.1 over TCP on 127.0.0.1:0 that answers what
//! no honest provider would (an endless line or event, a 20 MB body, a huge
//! `Retry-After`, a JSON 200 to a stream request, a streamer that never
//! stops), counts its calls, and notices when chatgate closes a connection
//! on it (a write fails, or a read ends).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What every request gets.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A status, extra headers and a body, framed by `Content-Length`.
    Whole {
        status: u16,
        headers: Vec<(String, String)>,
        content_type: String,
        body: Vec<u8>,
    },
    /// 200 `text/event-stream`, chunked: `first` once, then `repeat` forever.
    Endless { first: Vec<u8>, repeat: Vec<u8> },
}

impl Answer {
    pub fn status(status: u16, headers: &[(&str, &str)]) -> Self {
        Answer::Whole {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_type: "application/json".into(),
            body: br#"{"error":{"type":"rate_limit_error"}}"#.to_vec(),
        }
    }

    pub fn body(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Answer::Whole {
            status: 200,
            headers: vec![],
            content_type: content_type.into(),
            body: body.into(),
        }
    }

    pub fn endless(first: impl Into<Vec<u8>>, repeat: impl Into<Vec<u8>>) -> Self {
        Answer::Endless {
            first: first.into(),
            repeat: repeat.into(),
        }
    }
}

/// One OpenAI stream chunk carrying `text`, as an SSE event.
pub fn openai_delta(text: &str) -> String {
    let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    format!("data: {chunk}\n\n")
}

struct Shared {
    answer: Answer,
    calls: AtomicUsize,
    closed: AtomicUsize,
}

pub struct Hostile {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Hostile {
    pub async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            answer,
            calls: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
        });
        let accepting = shared.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, accepting.clone()));
            }
        });
        Self { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Connections the peer (chatgate) closed.
    pub fn closed(&self) -> usize {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Whether `n` connections were closed by chatgate within `limit`.
    pub async fn closed_within(&self, n: usize, limit: Duration) -> bool {
        super::eventually(limit, || self.closed() >= n).await
    }
}

/// Serves requests on one connection until the peer closes it.
async fn serve(mut socket: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    loop {
        if read_request(&mut socket, &mut buf).await.is_none() {
            break;
        }
        shared.calls.fetch_add(1, Ordering::SeqCst);
        if respond(&mut socket, &shared.answer).await.is_err() {
            break;
        }
    }
    shared.closed.fetch_add(1, Ordering::SeqCst);
}

/// Reads one request (headers, then a `Content-Length` body); `None` once
/// the connection ended.
async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(buf.len() < 1 << 20, "request headers too large");
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf.drain(..head_end + length);
    Some(())
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

async fn respond(socket: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    match answer {
        Answer::Whole {
            status,
            headers,
            content_type,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} Hostile\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            socket.write_all(head.as_bytes()).await?;
            for piece in body.chunks(64 * 1024) {
                socket.write_all(piece).await?;
            }
            Ok(())
        }
        Answer::Endless { first, repeat } => {
            socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                )
                .await?;
            if !first.is_empty() {
                socket.write_all(&chunk(first)).await?;
            }
            let repeat = chunk(repeat);
            loop {
                socket.write_all(&repeat).await?;
            }
        }
    }
}
