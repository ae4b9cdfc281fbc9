//! The guard in front of every route: the token on every change, loopback host names only.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::console::Console;
use crate::error::Problem;
use crate::token::{Token, HEADER};

/// Lets reads through, and changes only with the token; answers 403 otherwise, before any
/// handler runs (so nothing is written).
pub async fn guard(State(console): State<Console>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    if console.loopback_hosts_only && !loopback_host(request.headers()) {
        return refuse(
            api,
            "this console answers only on 127.0.0.1, localhost or [::1]",
        );
    }
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reading && !carries_token(&console, request.headers()) {
        return refuse(
            api,
            "a change needs the console's token: open the URL `curfew ui` printed, or send the X-Curfew-Token header",
        );
    }
    next.run(request).await
}

fn refuse(api: bool, message: &str) -> Response {
    if api {
        Problem::new(StatusCode::FORBIDDEN, message).into_response()
    } else {
        (
            StatusCode::FORBIDDEN,
            axum::response::Html(crate::html::message_page("Forbidden", message)),
        )
            .into_response()
    }
}

fn carries_token(console: &Console, headers: &axum::http::HeaderMap) -> bool {
    let from_header = headers.get(HEADER).and_then(|v| v.to_str().ok());
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(Token::from_cookies);
    [from_header, from_cookie]
        .into_iter()
        .flatten()
        .any(|candidate| console.token.matches(candidate))
}

fn loopback_host(headers: &axum::http::HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        // HTTP/1.0 clients may send no Host; a browser always does.
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}
