//! Errors as the API answers them: `{"error": "...", "field": "..."}` with a status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use curfew_core::ports::PortError;
use serde::Serialize;

use crate::console::RunError;

/// A refused or failed request.
#[derive(Debug)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub error: String,
    /// The request field at fault, for bad input.
    pub field: Option<&'static str>,
}

#[derive(Serialize)]
struct ProblemJson<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl Problem {
    /// A problem with `status` and `error`.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Problem {
        Problem {
            status,
            error: error.into(),
            field: None,
        }
    }

    /// Bad input in `field` (400).
    pub fn bad_input(field: &'static str, error: impl Into<String>) -> Problem {
        Problem {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            field: Some(field),
        }
    }

    /// Nothing by that name or id (404).
    pub fn not_found(error: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, error)
    }
}

impl From<PortError> for Problem {
    fn from(e: PortError) -> Self {
        Problem::new(StatusCode::BAD_GATEWAY, e.to_string())
    }
}

impl From<RunError> for Problem {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Invalid { field, message } => Problem::bad_input(field, message),
            RunError::UnknownSchedule(name) => {
                Problem::not_found(format!("no schedule named {name:?}"))
            }
            e @ RunError::ReadOnly(_) => Problem::new(StatusCode::CONFLICT, e.to_string()),
            e => Problem::new(StatusCode::BAD_GATEWAY, e.to_string()),
        }
    }
}

impl From<crate::config::ConfigError> for Problem {
    fn from(e: crate::config::ConfigError) -> Self {
        use crate::config::ConfigError;
        match e {
            ConfigError::Invalid { field, message } => Problem::bad_input(field, message),
            ConfigError::NotFound(message) => Problem::not_found(message),
            ConfigError::Port(e) => e.into(),
            e @ ConfigError::Trail(_) => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, error_chain(&e))
            }
        }
    }
}

/// An error with its causes, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemJson {
            error: &self.error,
            field: self.field,
        };
        (self.status, Json(body)).into_response()
    }
}
