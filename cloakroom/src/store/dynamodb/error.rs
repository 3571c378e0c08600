//! The SDK's errors as [`StoreError`]s.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};

use super::BACKEND;
use crate::store::StoreError;

/// Error codes DynamoDB answers when it is overloaded or failing: worth a
/// retry later.
const TRANSIENT_CODES: &[&str] = &[
    "InternalServerError",
    "ServiceUnavailable",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "LimitExceededException",
    "TransactionInProgressException",
];

/// Timeouts, connection failures, unreadable responses, throttling and
/// server errors (HTTP 5xx, whatever the body) are
/// [`StoreError::Unavailable`]; the rest (a missing table, a refused
/// request, bad credentials) is [`StoreError::Other`].
pub(super) fn sdk_error<E>(e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => se
            .err()
            .code()
            .is_some_and(|c| TRANSIENT_CODES.contains(&c)),
        _ => false,
    };
    // DisplayErrorContext: the SDK's own Display says only "service error".
    let message = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string();
    if transient {
        StoreError::unavailable_in(BACKEND, message)
    } else {
        StoreError::other_in(BACKEND, message)
    }
}

/// A request the SDK could not build (a bug of this store, never data).
pub(super) fn build_error(e: BuildError) -> StoreError {
    StoreError::other_in(BACKEND, e)
}
