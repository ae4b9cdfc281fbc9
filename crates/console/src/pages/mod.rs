//! The pages: server-rendered HTML that reads without JavaScript; forms post with the session
//! cookie the token URL set.

mod audit;
mod fleet;
pub use fleet::EVERYTHING;
mod operations;
mod overrides;
mod run;
mod savings;
mod schedules;

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use curfew_core::ports::PortError;

use crate::console::{Console, RunError};
use crate::html;

/// Every page route, and the assets.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/", get(fleet::page))
        .route("/schedules", get(schedules::list))
        .route("/schedules/{name}", get(schedules::show))
        .route(
            "/schedules/{name}/trigger",
            get(schedules::confirm_trigger).post(schedules::trigger),
        )
        .route("/schedules/{name}/enable", post(schedules::enable))
        .route("/schedules/{name}/disable", post(schedules::disable))
        .route("/overrides", get(overrides::list).post(overrides::add))
        .route("/overrides/{id}/remove", post(overrides::remove))
        .route("/audit", get(audit::page))
        .route("/savings", get(savings::page))
        .route("/operations", get(operations::list))
        .route("/operations/{id}", get(operations::show))
        .route("/operations/{id}/events", get(operations::events))
        .route("/run", get(run::form).post(run::start))
        .route("/run/plan", post(run::plan))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        html::CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        html::JS,
    )
}

/// A page that could not be made: its status and a message page.
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn not_found(message: String) -> PageError {
        PageError {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }
}

impl From<PortError> for PageError {
    fn from(e: PortError) -> Self {
        PageError {
            status: StatusCode::BAD_GATEWAY,
            message: e.to_string(),
        }
    }
}

impl From<RunError> for PageError {
    fn from(e: RunError) -> Self {
        let problem = crate::error::Problem::from(e);
        PageError {
            status: problem.status,
            message: problem.error,
        }
    }
}

impl From<crate::config::ConfigError> for PageError {
    fn from(e: crate::config::ConfigError) -> Self {
        let problem = crate::error::Problem::from(e);
        PageError {
            status: problem.status,
            message: problem.error,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self
            .status
            .canonical_reason()
            .unwrap_or("Error")
            .to_string();
        (self.status, Html(html::message_page(&title, &self.message))).into_response()
    }
}

/// What a handler answers with: a page or an error page.
pub type PageResult = Result<Response, PageError>;
