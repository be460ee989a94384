//! Errors and attribute access: SDK errors to [`StoreError`], attribute builders and readers.

use super::*;
use aws_sdk_dynamodb::config::http::HttpResponse;

/// Retryable ([`StoreError::Unavailable`]) or permanent ([`StoreError::Rejected`]) by what the SDK
/// says; a TransactWriteItems cancelled only by conflicts or throttling is retryable.
pub(super) fn sdk_error<E>(op: &'static str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = format!("DynamoDB {op}: {}", DisplayErrorContext(&e));
    crate::adapters::sdk_errors::classified(message, &e)
}

pub(super) fn corrupt(key: &impl fmt::Display, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason: reason.into(),
    }
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str, key: &ItemKey) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        Some(_) => Err(corrupt(key, format!("{name} is not a string"))),
        None => Err(corrupt(key, format!("{name} is missing"))),
    }
}

pub(super) fn get_s_opt<'a>(item: &'a Item, name: &str, key: &ItemKey) -> Result<Option<&'a str>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(corrupt(key, format!("{name} is not a string"))),
    }
}

pub(super) fn get_n_opt<T: FromStr>(item: &Item, name: &str, key: &ItemKey) -> Result<Option<T>, StoreError>
where
    T::Err: fmt::Display,
{
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|e| corrupt(key, format!("{name} = {v:?}: {e}"))),
        Some(_) => Err(corrupt(key, format!("{name} is not a number"))),
    }
}

pub(super) fn get_n<T: FromStr>(item: &Item, name: &str, key: &ItemKey) -> Result<T, StoreError>
where
    T::Err: fmt::Display,
{
    get_n_opt(item, name, key)?.ok_or_else(|| corrupt(key, format!("{name} is missing")))
}

pub(super) fn get_timestamp(item: &Item, name: &str, key: &ItemKey) -> Result<Timestamp, StoreError> {
    let raw = get_s(item, name, key)?;
    Timestamp::parse("timestamp", raw).map_err(|e| corrupt(key, format!("{name}: {e}")))
}

/// Why a TransactWriteItems was cancelled, per item.
pub(super) fn cancellation_codes(e: &SdkError<TransactWriteItemsError, impl fmt::Debug>) -> Option<Vec<String>> {
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(t) => Some(
            t.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

pub(super) fn is_conditional_check_failed<E: ProvideErrorMetadata + std::error::Error + 'static, R: fmt::Debug>(
    e: &SdkError<E, R>,
) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

pub(super) fn jitter(attempt: u32) -> Duration {
    let base = 10u64 << attempt.min(5);
    Duration::from_millis(base + rand::random::<u64>() % base)
}
