//! AWS SDK errors to [`StoreError`], the same for DynamoDB and S3: retryable
//! ([`StoreError::Unavailable`]) or permanent ([`StoreError::Rejected`]) by what the SDK says,
//! i.e. the service's error code, the HTTP status, or how the call failed before any response.

use crate::ports::StoreError;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

/// Service error codes that mean "not now": throttling, overload, an internal fault, contention.
const RETRYABLE_CODES: &[&str] = &[
    // DynamoDB
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    // S3 and the common ones
    "Throttling",
    "SlowDown",
    "InternalError",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailableException",
];

/// Cancellation reasons of a TransactWriteItems that a later attempt can get past.
const RETRYABLE_CANCELLATIONS: &[&str] = &[
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
];

/// Whether a service's answer is transient, from its error code and HTTP status.
pub(crate) fn is_retryable_answer(code: Option<&str>, status: Option<u16>) -> bool {
    code.is_some_and(|c| RETRYABLE_CODES.contains(&c)) || status.is_some_and(|s| s == 429 || s >= 500)
}

/// Whether a cancelled transaction may go through on a later attempt: some item collided or was
/// throttled, and no item failed for a reason of its own (a condition, validation, size).
pub(crate) fn is_retryable_cancellation(codes: &[String]) -> bool {
    codes.iter().any(|c| RETRYABLE_CANCELLATIONS.contains(&c.as_str()))
        && codes
            .iter()
            .all(|c| c == "None" || RETRYABLE_CANCELLATIONS.contains(&c.as_str()))
}

/// Whether repeating the call may succeed.
pub(crate) fn is_retryable<E>(e: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        // The request could not even be built: the same input fails the same way.
        SdkError::ConstructionFailure(_) => false,
        SdkError::TimeoutError(_) => true,
        // A refused or reset connection; a "user" failure is a bad endpoint or configuration.
        SdkError::DispatchFailure(d) => !d.is_user(),
        // A response that did not parse: cut or garbled on the way.
        SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => {
            let err: &(dyn std::error::Error + 'static) = s.err();
            if let Some(TransactWriteItemsError::TransactionCanceledException(t)) =
                err.downcast_ref::<TransactWriteItemsError>()
            {
                let codes: Vec<String> = t
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None").to_owned())
                    .collect();
                return is_retryable_cancellation(&codes);
            }
            is_retryable_answer(s.err().code(), Some(s.raw().status().as_u16()))
        }
        // A kind this SDK version does not name: assume transient, the conservative way for a store.
        _ => true,
    }
}

/// The [`StoreError`] for a failed SDK call, `message` naming the call and its cause.
pub(crate) fn classified<E>(message: String, e: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if is_retryable(e) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Rejected(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::{ConnectorError, DisplayErrorContext, ErrorMetadata};
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;
    // The same aws-smithy-types body DynamoDB's responses carry; only S3 re-exports it.
    use aws_sdk_s3::primitives::SdkBody;

    fn store_error<E>(op: &str, e: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        classified(format!("{op}: {}", DisplayErrorContext(&e)), &e)
    }

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
    }

    fn service(code: &str, status: u16) -> SdkError<GetItemError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        SdkError::service_error(GetItemError::generic(meta), response(status))
    }

    fn cancelled(codes: &[&str]) -> SdkError<TransactWriteItemsError, HttpResponse> {
        let mut t = TransactionCanceledException::builder()
            .message("cancelled")
            .meta(ErrorMetadata::builder().code("TransactionCanceledException").build());
        for c in codes {
            t = t.cancellation_reasons(CancellationReason::builder().code(*c).build());
        }
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(t.build()),
            response(400),
        )
    }

    #[test]
    fn throttling_server_faults_and_timeouts_are_retryable() {
        for (code, status) in [
            ("ProvisionedThroughputExceededException", 400),
            ("ThrottlingException", 400),
            ("RequestLimitExceeded", 400),
            ("InternalServerError", 500),
            ("SlowDown", 503),
            ("SomethingNew", 502),
            ("SomethingNew", 429),
        ] {
            assert!(is_retryable(&service(code, status)), "{code} {status}");
            assert!(store_error("GetItem", service(code, status)).is_retryable());
        }
        let timeout: SdkError<GetItemError, HttpResponse> = SdkError::timeout_error("slow");
        assert!(is_retryable(&timeout));
        let reset: SdkError<GetItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection reset".into()));
        assert!(is_retryable(&reset));
        let garbled: SdkError<GetItemError, HttpResponse> = SdkError::response_error("truncated", response(200));
        assert!(is_retryable(&garbled));
    }

    #[test]
    fn validation_access_and_missing_resources_are_permanent() {
        for (code, status) in [
            ("ValidationException", 400),
            ("AccessDeniedException", 400),
            ("ResourceNotFoundException", 400),
            ("UnrecognizedClientException", 400),
            ("AccessDenied", 403),
            ("NoSuchBucket", 404),
        ] {
            let e = store_error("GetItem", service(code, status));
            assert!(matches!(e, StoreError::Rejected(_)), "{code} {status}: {e:?}");
        }
        let unbuildable: SdkError<GetItemError, HttpResponse> = SdkError::construction_failure("no key");
        assert!(!is_retryable(&unbuildable));
        let bad_endpoint: SdkError<GetItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::user("invalid uri".into()));
        assert!(!is_retryable(&bad_endpoint));
    }

    #[test]
    fn a_cancelled_transaction_is_retryable_only_when_it_collided_or_was_throttled() {
        assert!(is_retryable(&cancelled(&["None", "TransactionConflict"])));
        assert!(is_retryable(&cancelled(&["ThrottlingError", "None"])));
        assert!(is_retryable(&cancelled(&["ProvisionedThroughputExceeded"])));
        assert!(!is_retryable(&cancelled(&["None", "ValidationError"])));
        assert!(!is_retryable(&cancelled(&[
            "TransactionConflict",
            "ItemCollectionSizeLimitExceeded"
        ])));
        assert!(!is_retryable(&cancelled(&["None", "None"])));
    }

    #[test]
    fn the_message_names_the_call_and_the_cause() {
        let e = store_error("DynamoDB GetItem", service("ValidationException", 400));
        let text = e.to_string();
        assert!(
            text.contains("DynamoDB GetItem") && text.contains("ValidationException"),
            "{text}"
        );
    }
}
