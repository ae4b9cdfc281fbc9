//! A minimal Lambda Runtime API on loopback, enough to time a Lambda binary's cold start.
//!
//! A Lambda bootstrap (lambda_runtime) finds the API in `AWS_LAMBDA_RUNTIME_API`, long-polls
//! `GET /2018-06-01/runtime/invocation/next` for an event, and posts the handler's result to
//! `/2018-06-01/runtime/invocation/{request id}/response` (or `/error`); a bootstrap that fails
//! before its first poll posts `/2018-06-01/runtime/init/error`. This server speaks exactly
//! that (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>), hands out the
//! events it was given one per `next` and then leaves `next` unanswered, as Lambda does while it
//! has nothing to deliver, and reports each request with the instant it arrived.
//!
//! It is a test instrument, not an emulator: no streaming responses, no chunked bodies (the
//! runtime sends buffered responses with a `Content-Length`), one function at a time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The API version prefix every Runtime API path starts with.
const PREFIX: &str = "/2018-06-01/runtime/";

/// How far in the future the deadline of a handed-out event is: Lambda's longest timeout.
const DEADLINE: Duration = Duration::from_secs(900);

/// A Runtime API request, recognised from its method and path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET .../invocation/next`: the bootstrap is ready for an event.
    Next,
    /// `POST .../invocation/{id}/response`: the handler's result for event `id`.
    Response(String),
    /// `POST .../invocation/{id}/error`: the handler failed on event `id`.
    Error(String),
    /// `POST .../init/error`: the bootstrap failed before asking for an event.
    InitError,
    /// Anything else (answered 404).
    Unknown,
}

impl Route {
    /// Recognises a request line's method and path (a query string is ignored).
    pub fn parse(method: &str, target: &str) -> Route {
        let path = target.split('?').next().unwrap_or(target);
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return Route::Unknown;
        };
        match (method, rest) {
            ("GET", "invocation/next") => Route::Next,
            ("POST", "init/error") => Route::InitError,
            ("POST", rest) => match rest
                .strip_prefix("invocation/")
                .and_then(|r| r.split_once('/'))
            {
                Some((id, "response")) if !id.is_empty() => Route::Response(id.to_string()),
                Some((id, "error")) if !id.is_empty() => Route::Error(id.to_string()),
                _ => Route::Unknown,
            },
            _ => Route::Unknown,
        }
    }
}

/// One event to hand out, with the request id it goes by.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`; the bootstrap posts its result under it.
    pub request_id: String,
    /// The event, as the service that invokes the function would send it.
    pub event: serde_json::Value,
}

impl Invocation {
    /// An event with a fresh random request id.
    pub fn new(event: serde_json::Value) -> Invocation {
        Invocation {
            request_id: uuid::Uuid::new_v4().to_string(),
            event,
        }
    }
}

/// What the bootstrap did, and when the server had all of it.
#[derive(Clone, Debug)]
pub struct Report {
    /// The request.
    pub route: Route,
    /// Its JSON body (`Null` for a `next` or an empty body).
    pub body: serde_json::Value,
    /// When the whole request had arrived.
    pub at: Instant,
}

/// The answer to a `next` that hands out `invocation`: status line and the headers
/// lambda_runtime reads (it refuses an event without a request id or deadline), then the body.
pub fn next_response(invocation: &Invocation, function_arn: &str, now: SystemTime) -> String {
    let deadline_ms = (now + DEADLINE)
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let body = invocation.event.to_string();
    let trace = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        deadline_ms / 1000,
        &uuid::Uuid::new_v4().simple().to_string()[..24],
        &uuid::Uuid::new_v4().simple().to_string()[..16],
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
         Lambda-Runtime-Aws-Request-Id: {}\r\nLambda-Runtime-Deadline-Ms: {deadline_ms}\r\n\
         Lambda-Runtime-Invoked-Function-Arn: {function_arn}\r\nLambda-Runtime-Trace-Id: {trace}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        invocation.request_id,
        body.len(),
    )
}

/// A Runtime API serving one function on a free loopback port until dropped.
pub struct RuntimeApi {
    address: SocketAddr,
    reports: mpsc::UnboundedReceiver<Report>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    events: Mutex<VecDeque<Invocation>>,
    function_arn: String,
    reports: mpsc::UnboundedSender<Report>,
}

impl RuntimeApi {
    /// Starts serving `events`, one per `next`, to the function `function_arn`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(events: Vec<Invocation>, function_arn: &str) -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (sender, reports) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: Mutex::new(events.into()),
            function_arn: function_arn.to_string(),
            reports: sender,
        });
        let task = tokio::spawn(async move {
            // Each connection gets its own task: a `next` left waiting must not hold up the
            // bootstrap's other connection posting a result.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, shared.clone()));
            }
        });
        Ok(RuntimeApi {
            address,
            reports,
            task,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The next request the bootstrap made, or `None` after `timeout`.
    pub async fn report(&mut self, timeout: Duration) -> Option<Report> {
        tokio::time::timeout(timeout, self.reports.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection's requests in turn (lambda_runtime keeps its connection alive).
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    while let Some((route, body, used)) = read_request(&mut stream, &mut buffer).await {
        buffer.drain(..used);
        let at = Instant::now();
        let reply = match &route {
            Route::Next => {
                let next = shared.events.lock().expect("not poisoned").pop_front();
                let _ = shared.reports.send(Report {
                    route: route.clone(),
                    body,
                    at,
                });
                match next {
                    Some(invocation) => {
                        next_response(&invocation, &shared.function_arn, SystemTime::now())
                    }
                    // Nothing more to deliver: keep the poll open, as Lambda does between events.
                    None => std::future::pending().await,
                }
            }
            Route::Response(_) | Route::Error(_) | Route::InitError => {
                let _ = shared.reports.send(Report {
                    route: route.clone(),
                    body,
                    at,
                });
                plain(202, "Accepted", r#"{"status":"OK"}"#)
            }
            Route::Unknown => plain(404, "Not Found", r#"{"errorType":"NotFound"}"#),
        };
        if stream.write_all(reply.as_bytes()).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

fn plain(code: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one request (buffered in `buffer`): its route, JSON body and the bytes it took, or
/// `None` when the client closed the connection or sent what this server does not speak.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<(Route, serde_json::Value, usize)> {
    let (route, head, length) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head) = request.parse(buffer).ok()? {
            let route = Route::parse(request.method?, request.path?);
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            if header("transfer-encoding").is_some() {
                return None;
            }
            let length = match header("content-length") {
                Some(l) => l.trim().parse().ok()?,
                None => 0,
            };
            break (route, head, length);
        }
        if !read_more(stream, buffer).await {
            return None;
        }
    };
    while buffer.len() < head + length {
        if !read_more(stream, buffer).await {
            return None;
        }
    }
    let body = &buffer[head..head + length];
    let body = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    Some((route, body, head + length))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_api_paths_are_told_apart() {
        let p = "/2018-06-01/runtime";
        assert_eq!(
            Route::parse("GET", &format!("{p}/invocation/next")),
            Route::Next
        );
        assert_eq!(
            Route::parse("POST", &format!("{p}/invocation/8476a536/response")),
            Route::Response("8476a536".into())
        );
        assert_eq!(
            Route::parse("POST", &format!("{p}/invocation/8476a536/error")),
            Route::Error("8476a536".into())
        );
        assert_eq!(
            Route::parse("POST", &format!("{p}/init/error")),
            Route::InitError
        );
        for (method, path) in [
            ("POST", format!("{p}/invocation/next")),
            ("GET", format!("{p}/invocation/8476a536/response")),
            ("POST", format!("{p}/invocation//response")),
            ("POST", format!("{p}/invocation/8476a536/other")),
            ("GET", "/2020-01-01/runtime/invocation/next".to_string()),
        ] {
            assert_eq!(
                Route::parse(method, &path),
                Route::Unknown,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_handed_out_event_carries_the_headers_lambda_runtime_requires() {
        let invocation = Invocation {
            request_id: "8476a536-e9f4-11e8-9739-2dfe598c3fcd".into(),
            event: serde_json::json!({"Records": []}),
        };
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:curfew-worker";
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let text = next_response(&invocation, arn, now);

        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(text.as_bytes()).unwrap() else {
            panic!("an incomplete response: {text}");
        };
        assert_eq!(response.code, Some(200));
        let header = |name: &str| {
            let h = response.headers.iter().find(|h| h.name == name);
            std::str::from_utf8(h.unwrap_or_else(|| panic!("no {name}")).value).unwrap()
        };
        assert_eq!(
            header("Lambda-Runtime-Aws-Request-Id"),
            invocation.request_id
        );
        assert_eq!(header("Lambda-Runtime-Deadline-Ms"), "1800000900000");
        assert_eq!(header("Lambda-Runtime-Invoked-Function-Arn"), arn);
        assert!(header("Lambda-Runtime-Trace-Id").starts_with("Root=1-"));
        let body = &text[head..];
        assert_eq!(header("Content-Length"), body.len().to_string());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            invocation.event
        );
    }

    #[tokio::test]
    async fn a_result_posted_for_a_handed_out_event_is_reported_with_its_body() {
        let invocation = Invocation::new(serde_json::json!({"n": 1}));
        let mut api = RuntimeApi::start(vec![invocation.clone()], "arn:test")
            .await
            .unwrap();
        let mut stream = tokio::net::TcpStream::connect(api.address()).await.unwrap();
        stream
            .write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let next = api.report(Duration::from_secs(5)).await.unwrap();
        assert_eq!(next.route, Route::Next);
        let mut answer = vec![0u8; 4096];
        let n = stream.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.contains(&invocation.request_id), "{answer}");

        let body = r#"{"batchItemFailures":[]}"#;
        let post = format!(
            "POST /2018-06-01/runtime/invocation/{}/response HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            invocation.request_id,
            body.len()
        );
        stream.write_all(post.as_bytes()).await.unwrap();
        let done = api.report(Duration::from_secs(5)).await.unwrap();
        assert_eq!(done.route, Route::Response(invocation.request_id.clone()));
        assert_eq!(done.body, serde_json::json!({"batchItemFailures": []}));
        assert!(done.at >= next.at);
    }
}
