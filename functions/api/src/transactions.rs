//! `/v1/transactions`: score one, read one, list a customer's.

use crate::auth;
use crate::cursor::Listing;
use crate::problem::ApiError;
use crate::request::{check_json, field_error, Ctx, PageParams};
use crate::response::ok;
use crate::store::ApiStore;
use crate::views::{DecisionView, PageView, StoredDecisionView};
use crate::App;
use lambda_http::{Body, Request, Response};
use verdict::app::scoring::{Origin, ScoreError};
use verdict::domain::auth::Scope;
use verdict::domain::decision::IdempotencyKey;
use verdict::domain::decision::{FieldError, ScoreRequest};
use verdict::domain::{CustomerId, TransactionId};
use verdict::ports::ModelBlobs;

/// The contract's body limit (16 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// `POST /v1/transactions`. Credential first, then media type, size and body, then one
/// scoring call (one BatchGetItem, one TransactWriteItems with a warm key cache).
pub async fn score<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    // An API key's record comes from the container's cache (the decision's batch re-reads it);
    // a token is verified here and has no item to re-read.
    let principal = match auth::bearer(req.headers())? {
        auth::Bearer::Key(hash) => {
            app.keys
                .principal(&app.scorer.store, &hash, Scope::TransactionsWrite)
                .await?
        }
        auth::Bearer::Token(token) => auth::token_principal(app, &token, Scope::TransactionsWrite).await?,
    };
    check_json(req.headers())?;
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            size: body.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    let mut errors = Vec::new();
    let idempotency_key = match req.headers().get(IdempotencyKey::FIELD) {
        None => None,
        Some(v) => match idempotency_key(v.as_bytes()) {
            Ok(k) => Some(k),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    let request = match ScoreRequest::parse_json(body) {
        Ok(r) => Some(r),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    let Some(request) = request.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };

    let origin = Origin {
        request_id: cx.request_id,
        started: cx.started,
    };
    let scored = app
        .scorer
        .score(&principal, &request, idempotency_key.as_ref(), &origin)
        .await
        .inspect_err(|e| {
            // The store refused the key (revoked or expired since it was cached).
            if let (ScoreError::Auth(_), Some(hash)) = (e, &principal.api_key) {
                app.keys.evict(hash);
            }
        })?;
    Ok(ok(&DecisionView::new(&scored.record, scored.replay), cx.request_id))
}

/// `GET /v1/transactions/{id}`: another tenant's transaction is simply not found.
pub async fn get<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_id: &str,
) -> Result<Response<Body>, ApiError> {
    let principal = auth::principal(app, req.headers(), Scope::TransactionsRead).await?;
    let id = TransactionId::parse(raw_id).map_err(|e| ApiError::field("id", e.reason))?;
    match app.scorer.store.decision(&principal.tenant, &id).await? {
        Some(record) => Ok(ok(&StoredDecisionView::new(&record), cx.request_id)),
        None => Err(ApiError::NotFound(format!("No transaction \"{id}\"."))),
    }
}

/// `GET /v1/transactions?customer=…&limit=…&cursor=…`, newest first.
pub async fn list<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let principal = auth::principal(app, req.headers(), Scope::TransactionsRead).await?;
    let query = cx.query();
    let mut errors = Vec::new();
    let customer = match query.first("customer") {
        None => {
            errors.push(field_error("customer", "is required"));
            None
        }
        Some(raw) => CustomerId::parse(raw)
            .map_err(|e| errors.push(field_error("customer", e.reason)))
            .ok(),
    };
    let page = PageParams::parse(&query, &mut errors);
    let (Some(customer), Some(page), true) = (customer, page, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let listing = Listing {
        tenant: &principal.tenant,
        kind: "transactions",
        scope: &[customer.as_str()],
    };
    let position = app.cursors.open(&listing, page.cursor.as_deref())?;
    let page = app
        .scorer
        .store
        .decisions_for_customer(&principal.tenant, &customer, page.limit, position.as_deref())
        .await?;
    let view = PageView {
        items: page.items.iter().map(StoredDecisionView::new).collect(),
        next_cursor: app.cursors.seal(&listing, page.next_cursor)?,
    };
    Ok(ok(&view, cx.request_id))
}

/// The `Idempotency-Key` header through its newtype (non-UTF-8 bytes become U+FFFD, which the
/// newtype refuses like any other character outside the contract's set).
fn idempotency_key(raw: &[u8]) -> Result<IdempotencyKey, FieldError> {
    IdempotencyKey::parse(&String::from_utf8_lossy(raw)).map_err(FieldError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_follow_the_contract_pattern() {
        assert!(idempotency_key(b"3f2c9d0e-7b1a-4c55-9e61-2a8f0b6d4e11").is_ok());
        assert!(idempotency_key(b"order:42.retry_1").is_ok());
        for bad in [&b""[..], b"a#b", b"a b", b"caf\xc3\xa9", &[b'a'; 256]] {
            assert_eq!(idempotency_key(bad).unwrap_err().field, "Idempotency-Key");
        }
    }
}
