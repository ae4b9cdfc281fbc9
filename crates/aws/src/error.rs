//! Classifying SDK errors into [`PortError`]s (never flattened to a string: the source is kept)
//! and retrying throttles with jittered exponential backoff.

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use backon::{ExponentialBuilder, Retryable};
use curfew_core::metrics::{self, Metric};
use curfew_core::ports::{ErrorKind, PortError, PortResult};

/// Maps an AWS error code to how curfew treats it.
pub fn kind_of_code(code: Option<&str>) -> ErrorKind {
    match code.unwrap_or_default() {
        "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "ProvisionedThroughputExceededException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "SlowDown"
        | "ServiceUnavailable"
        | "InternalFailure"
        | "InternalServerError"
        | "InternalError"
        | "ServerException"
        | "TransactionConflictException"
        // SNS's own spellings.
        | "Throttled"
        | "KMSThrottling" => ErrorKind::Throttled,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "AuthFailure"
        | "RegionDisabledException"
        | "AuthorizationError" => ErrorKind::AccessDenied,
        "ResourceNotFoundException"
        | "NotFoundException"
        | "NoSuchEntity"
        | "AWS.SimpleQueueService.NonExistentQueue"
        | "QueueDoesNotExist"
        | "NotFound" => ErrorKind::NotFound,
        "ResourceInUseException"
        | "ResourceInUse"
        | "ScalingActivityInProgress"
        | "ScalingActivityInProgressFault"
        | "ResourceContention" => ErrorKind::InUse,
        "ValidationError"
        | "ValidationException"
        | "InvalidParameterException"
        | "InvalidParameterValue"
        | "InvalidRequestException"
        | "MalformedPolicyDocument"
        | "InvalidParameterValueException"
        | "InvalidParameter" => ErrorKind::Invalid,
        "ConditionalCheckFailedException" => ErrorKind::ConditionFailed,
        // A session that expired early (revoked, or the clock ran ahead): the spoke adapter
        // drops it from the session cache and tries once more with a fresh one.
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => {
            ErrorKind::ExpiredCredentials
        }
        _ => ErrorKind::Other,
    }
}

/// Classifies an SDK error, keeping it as the source.
pub fn classify<E, R>(what: &str, err: SdkError<E, R>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (kind, detail) = match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let kind = kind_of_code(e.code());
            let detail = format!(
                "{}: {}",
                e.code().unwrap_or("error"),
                e.message().unwrap_or("no message")
            );
            (kind, detail)
        }
        SdkError::TimeoutError(_) => (ErrorKind::Throttled, "timed out".to_string()),
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => (
            ErrorKind::Other,
            format!("could not reach the service ({})", network_cause(&err)),
        ),
        // Not the network: e.g. no credentials could be loaded. Say what it was.
        SdkError::DispatchFailure(_) => (
            ErrorKind::Other,
            format!("the request was not sent: {}", causes(&err)),
        ),
        other => (ErrorKind::Other, other.to_string()),
    };
    PortError::with_source(kind, format!("{what}: {detail}"), err)
}

/// Why a request never reached the service, in a few words: the innermost cause, named by its
/// I/O error kind where that says it best.
fn network_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    match innermost.downcast_ref::<std::io::Error>().map(|e| e.kind()) {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_string(),
        Some(std::io::ErrorKind::TimedOut) => "timed out".to_string(),
        _ => innermost.to_string(),
    }
}

/// An error and its sources as one line of their messages (no Debug dumps), repeats dropped.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Classifies a TransactWriteItems error. A cancelled transaction gives one reason per item;
/// its kind follows them: a failed condition is an answer, a conflict with another transaction
/// on the same item (or a throttle) is retried, anything else is not ours to guess.
pub fn classify_transaction<R>(what: &str, err: SdkError<TransactWriteItemsError, R>) -> PortError
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let SdkError::ServiceError(service) = &err else {
        return classify(what, err);
    };
    let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err() else {
        return classify(what, err);
    };
    let codes: Vec<&str> = cancelled
        .cancellation_reasons()
        .iter()
        .filter_map(|r| r.code())
        .filter(|code| *code != "None")
        .collect();
    let kind = if codes.contains(&"ConditionalCheckFailed") {
        ErrorKind::ConditionFailed
    } else if codes.iter().any(|code| {
        matches!(
            *code,
            "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
        )
    }) {
        ErrorKind::Throttled
    } else {
        ErrorKind::Other
    };
    let message = format!("{what}: transaction cancelled ({})", codes.join(", "));
    PortError::with_source(kind, message, err)
}

/// Classifies the error of a fenced transaction: a ConditionCheck on the target's lease item
/// first, then the write itself. A failed check on the lease means the lease moved on
/// ([`ErrorKind::LeaseLost`]); anything else is read as [`classify_transaction`] reads it.
pub fn classify_fenced<R>(what: &str, err: SdkError<TransactWriteItemsError, R>) -> PortError
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let SdkError::ServiceError(service) = &err {
        if let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err() {
            let lease_check = cancelled
                .cancellation_reasons()
                .first()
                .and_then(|r| r.code());
            if lease_check == Some("ConditionalCheckFailed") {
                let message = format!("{what}: the target's lease is no longer this delivery's");
                return PortError::with_source(ErrorKind::LeaseLost, message, err);
            }
        }
    }
    classify_transaction(what, err)
}

/// The backoff used around our own retry loops: jittered, exponential, a few tries. The SDK's
/// own standard retry is kept at 2 attempts (see `config`) so the two do not multiply.
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(5)
}

/// Runs `call`, retrying throttles and transient faults with [`backoff`].
pub async fn retrying<T, F, Fut>(call: F) -> PortResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
{
    retrying_with(backoff(), call).await
}

/// [`retrying`] with a backoff of the caller's: the simulation passes [`backoff`] with a seeded
/// jitter (`with_jitter_seed`), so its throttled runs repeat exactly.
pub async fn retrying_with<T, F, Fut>(backoff: ExponentialBuilder, call: F) -> PortResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
{
    call.retry(backoff)
        .when(|e: &PortError| e.kind == ErrorKind::Throttled)
        .notify(|_, _| metrics::emit(Metric::ThrottleRetries, 1.0, None, None))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_codes_are_classified_for_retrying() {
        assert_eq!(
            kind_of_code(Some("ThrottlingException")),
            ErrorKind::Throttled
        );
        assert_eq!(kind_of_code(Some("Throttling")), ErrorKind::Throttled);
        assert_eq!(kind_of_code(Some("AccessDenied")), ErrorKind::AccessDenied);
        assert_eq!(
            kind_of_code(Some("ResourceInUseException")),
            ErrorKind::InUse
        );
        assert_eq!(kind_of_code(Some("ValidationError")), ErrorKind::Invalid);
        assert_eq!(kind_of_code(None), ErrorKind::Other);
    }

    #[test]
    fn sns_codes_are_classified_like_the_other_services() {
        let codes = [
            "AuthorizationError",
            "NotFound",
            "InvalidParameter",
            "Throttled",
        ];
        let kinds: Vec<ErrorKind> = codes.iter().map(|c| kind_of_code(Some(c))).collect();
        assert_eq!(
            kinds,
            [
                ErrorKind::AccessDenied,
                ErrorKind::NotFound,
                ErrorKind::Invalid,
                ErrorKind::Throttled
            ]
        );
    }

    #[test]
    fn missing_credentials_are_named_not_reported_as_an_unreachable_service() {
        use aws_credential_types::provider::error::CredentialsError;
        use aws_smithy_runtime_api::client::result::ConnectorError;
        use aws_smithy_runtime_api::http::Response;

        let err: SdkError<aws_sdk_dynamodb::operation::query::QueryError, Response> =
            SdkError::dispatch_failure(ConnectorError::other(
                Box::new(CredentialsError::not_loaded(
                    "no credentials found in chain",
                )),
                None,
            ));
        let e = classify("querying the state table", err);
        assert!(!e.message.contains("could not reach"), "{}", e.message);
        assert!(e.message.contains("no credentials found"), "{}", e.message);
        assert!(
            !e.message.contains("ConnectorError"),
            "no Debug dump: {}",
            e.message
        );
    }

    #[test]
    fn a_refused_connection_is_reported_by_its_cause_only() {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        use aws_smithy_runtime_api::http::Response;

        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err: SdkError<aws_sdk_dynamodb::operation::query::QueryError, Response> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let e = classify("listing schedules", err);
        assert_eq!(
            e.message,
            "listing schedules: could not reach the service (connection refused)"
        );
    }
}
