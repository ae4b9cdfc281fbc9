//! Invoking the deployed router Lambda directly: how `curfew stop|start|trigger` and the
//! console start an operation against AWS (docs/INVOKE.md documents the payload; it is the one
//! `aws lambda invoke` would send).

use aws_sdk_lambda::primitives::Blob;
use curfew_core::ports::PortError;
use curfew_core::service::invocation::{Invocation, InvocationResponse};

use crate::error::classify;

/// Why a direct invocation of the router function did not start an operation.
#[derive(Debug, thiserror::Error)]
pub enum RouterFunctionError {
    /// The Lambda API call itself failed (permissions, throttling, no such function).
    #[error(transparent)]
    Call(#[from] PortError),
    /// The function ran and reported an error (a payload it refused, a crash).
    #[error("the router function {function} failed ({kind}): {message}")]
    Function {
        /// The function invoked.
        function: String,
        /// Lambda's `FunctionError` (`Unhandled`, `Handled`).
        kind: String,
        /// The function's `errorMessage`, or its raw answer.
        message: String,
    },
    /// The function answered something that is not an operation.
    #[error("the router function {function} answered {body:?}, not an operation")]
    NotAnOperation {
        /// The function invoked.
        function: String,
        /// What it answered.
        body: String,
    },
}

/// Invokes the router `function` with `invocation` and returns the operation it started.
pub async fn invoke_router(
    client: &aws_sdk_lambda::Client,
    function: &str,
    invocation: &Invocation,
) -> Result<InvocationResponse, RouterFunctionError> {
    // An `Invocation` is plain data (strings, enums): encoding it cannot fail.
    let payload = serde_json::to_vec(invocation).unwrap_or_default();
    let out = client
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload))
        .send()
        .await
        .map_err(|e| classify(&format!("invoking {function}"), e))?;
    let body = out
        .payload()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    if let Some(kind) = out.function_error() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(RouterFunctionError::Function {
            function: function.to_string(),
            kind: kind.to_string(),
            message,
        });
    }
    serde_json::from_slice(&body).map_err(|_| RouterFunctionError::NotAnOperation {
        function: function.to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
