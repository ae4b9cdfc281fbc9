//! Classifying Kubernetes API errors into [`PortError`]s, keeping the kube error as the source.

use curfew_core::ports::{ErrorKind, PortError};

/// How curfew treats an API server's answer with HTTP status `code` (and the `reason` of its
/// `Status` object, read when the code is missing).
pub fn kind_of_status(code: u16, reason: &str) -> ErrorKind {
    match (code, reason) {
        (404, _) | (0, "NotFound") => ErrorKind::NotFound,
        (401 | 403, _) | (0, "Unauthorized" | "Forbidden") => ErrorKind::AccessDenied,
        (409, _) | (0, "Conflict" | "AlreadyExists") => ErrorKind::InUse,
        (400 | 422, _) | (0, "BadRequest" | "Invalid") => ErrorKind::Invalid,
        // 429 is the API server's priority and fairness shedding load; 5xx includes the
        // apiserver's own timeouts (504) and an unavailable control plane during an upgrade.
        (429 | 500..=599, _)
        | (0, "TooManyRequests" | "ServiceUnavailable" | "Timeout" | "InternalError") => {
            ErrorKind::Throttled
        }
        _ => ErrorKind::Other,
    }
}

/// Classifies a kube error from doing `what`, keeping it as the source.
pub fn classify(what: &str, err: kube::Error) -> PortError {
    let (kind, detail) = match &err {
        kube::Error::Api(status) => {
            let kind = kind_of_status(status.code, &status.reason);
            let detail = format!(
                "{} {}: {}",
                status.code,
                if status.reason.is_empty() {
                    "error"
                } else {
                    &status.reason
                },
                if status.message.is_empty() {
                    "no message"
                } else {
                    &status.message
                }
            );
            (kind, detail)
        }
        other if timed_out(other) => (ErrorKind::Throttled, "timed out".to_string()),
        other => (
            ErrorKind::Other,
            format!("could not reach the API server ({})", innermost(other)),
        ),
    };
    PortError::with_source(kind, format!("{what}: {detail}"), err)
}

/// True when a read, write or connect timeout ended the call (the client's own timeouts surface
/// as an I/O error of kind `TimedOut` somewhere down the source chain).
fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// The innermost cause's message: for a refused connection, "Connection refused" rather than a
/// stack of wrappers.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}
