//! A fake Kubernetes API server on loopback: answers requests with canned Kubernetes JSON and
//! records every request exactly as it arrived (method, path, query, headers, body), so tests
//! assert on what reached the server.
//!
//! It speaks just enough HTTP/1.1 for kube's client (keep-alive, `Content-Length` bodies), on
//! tokio alone: a hyper or axum server would turn on hyper's `server` feature, and with it
//! rebuild hyper and everything above it (the AWS SDK's HTTP client among them) for every test
//! build of the workspace.

#![allow(dead_code)]

pub mod json;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// `GET`, `PATCH`, `DELETE`...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, decoded.
    pub query: BTreeMap<String, String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The body as JSON (`None` when empty).
    pub body: Option<Value>,
}

impl Received {
    /// `path?query`, the query decoded and its parameters in name order.
    pub fn target(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, query.join("&"))
        }
    }

    /// `METHOD path?query`, for asserting the order of calls.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target())
    }
}

/// How the server answers one route.
#[derive(Clone, Debug)]
enum Reply {
    Json(u16, Value),
    /// Keeps the connection open and never answers.
    Never,
}

#[derive(Default)]
struct State {
    /// Replies per (method, path), used in order; the last one repeats.
    routes: BTreeMap<(String, String), VecDeque<Reply>>,
    received: Vec<Received>,
}

/// The running server; dropping it stops it and every open connection.
pub struct FakeApiServer {
    /// `http://127.0.0.1:PORT`, or `https://` when it serves TLS.
    pub url: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FakeApiServer {
    /// Starts a server on a free loopback port, over plain HTTP.
    pub async fn start() -> Self {
        Self::listen(None).await
    }

    /// Starts a server on a free loopback port, over TLS with `certificate` (PEM chain) and its
    /// PKCS#8 `key` (PEM), as an EKS API server presents the certificate its cluster CA signed.
    pub async fn start_tls(certificate: &str, key: &str) -> Self {
        let chain = pem::parse_many(certificate)
            .expect("PEM certificates")
            .into_iter()
            .map(|c| c.into_contents().into())
            .collect();
        let key = pem::parse(key).expect("a PEM key").into_contents();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                chain,
                rustls::pki_types::PrivatePkcs8KeyDer::from(key).into(),
            )
            .expect("a certificate and its key");
        Self::listen(Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn listen(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}",
            listener.local_addr().expect("local address")
        );
        let state = Arc::new(Mutex::new(State::default()));
        let serving = state.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set, so aborting the accept loop closes them too.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                match tls.clone() {
                    None => {
                        connections.spawn(serve(stream, state));
                    }
                    Some(acceptor) => {
                        connections.spawn(async move {
                            // A client that refuses the certificate ends the handshake.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, state).await;
                            }
                        });
                    }
                }
            }
        });
        FakeApiServer { url, state, task }
    }

    /// Answers `method path` with `status` and `body` (after any replies queued before it).
    /// `path` may carry a query (decoded, parameters in name order) to answer only requests
    /// with exactly that query; otherwise it answers whatever the query.
    pub fn answer(&self, method: &str, path: &str, status: u16, body: Value) {
        self.push(method, path, Reply::Json(status, body));
    }

    /// Never answers `method path` (the connection stays open).
    pub fn never_answer(&self, method: &str, path: &str) {
        self.push(method, path, Reply::Never);
    }

    fn push(&self, method: &str, path: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .routes
            .entry((method.to_string(), path.to_string()))
            .or_default()
            .push_back(reply);
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Every request received so far as `METHOD path?query` lines.
    pub fn lines(&self) -> Vec<String> {
        self.received().iter().map(Received::line).collect()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection: requests one after another (keep-alive) until the client closes it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: Arc<Mutex<State>>) {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let Some((received, used)) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        buffer.drain(..used);
        let reply = {
            let mut state = state.lock().unwrap();
            let exact = (received.method.clone(), received.target());
            let key = if state.routes.contains_key(&exact) {
                exact
            } else {
                (received.method.clone(), received.path.clone())
            };
            state.received.push(received);
            match state.routes.get_mut(&key) {
                Some(replies) if replies.len() > 1 => replies.pop_front().unwrap(),
                Some(replies) => replies.front().cloned().unwrap(),
                None => Reply::Json(
                    404,
                    json::status(404, "NotFound", &format!("{} {} not found", key.0, key.1)),
                ),
            }
        };
        let (code, body) = match reply {
            Reply::Json(code, body) => (code, body),
            Reply::Never => std::future::pending().await,
        };
        let body = body.to_string();
        let head = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            reason(code),
            body.len()
        );
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(body.as_bytes()).await.is_err()
            || stream.flush().await.is_err()
        {
            return;
        }
    }
}

/// Reads one request from `stream` (buffered in `buffer`); returns it and how many bytes of
/// the buffer it took, or `None` when the client closed the connection.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<(Received, usize)> {
    let head = loop {
        if let Some(head) = parse_head(buffer) {
            break head;
        }
        if !read_more(stream, buffer).await {
            return None;
        }
    };
    assert!(
        head.header("transfer-encoding").is_none(),
        "the fake server reads Content-Length bodies only"
    );
    let length: usize = head
        .header("content-length")
        .map(|l| l.parse().expect("a numeric Content-Length"))
        .unwrap_or(0);
    while buffer.len() < head.length + length {
        if !read_more(stream, buffer).await {
            return None;
        }
    }
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let body = &buffer[head.length..head.length + length];
    let received = Received {
        method: head.method.clone(),
        path: path.to_string(),
        query: form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        content_type: head.header("content-type"),
        accept: head.header("accept"),
        authorization: head.header("authorization"),
        body: (!body.is_empty()).then(|| serde_json::from_slice(body).expect("a JSON body")),
    };
    Some((received, head.length + length))
}

/// A request's line and headers.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    /// Bytes up to and including the blank line.
    length: usize,
}

impl Head {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// The head of the request at the start of `buffer`, once all of it has arrived.
fn parse_head(buffer: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buffer).expect("a valid request") {
        httparse::Status::Partial => None,
        httparse::Status::Complete(length) => Some(Head {
            method: request.method.expect("a method").to_string(),
            target: request.path.expect("a request target").to_string(),
            headers: request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            length,
        }),
    }
}

async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
