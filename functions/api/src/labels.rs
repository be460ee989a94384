//! `POST /v1/transactions/{id}/label`: one label through the same code as label files
//! ([`verdict::app::labels::label_transaction`]).

use crate::auth;
use crate::problem::ApiError;
use crate::request::{check_json, field_error, Ctx};
use crate::response::ok;
use crate::store::ApiStore;
use crate::views::LabelView;
use crate::App;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use verdict::app::labels::{label_transaction, LabelError, LabelOutcome};
use verdict::domain::auth::Scope;
use verdict::domain::labels::LabelRequest;
use verdict::domain::TransactionId;
use verdict::ports::ModelBlobs;

/// A label body: three short fields and a note of at most 1,000 characters.
pub const MAX_LABEL_BODY_BYTES: usize = 8 * 1024;

impl From<LabelError> for ApiError {
    fn from(e: LabelError) -> Self {
        match e {
            LabelError::NotFound(id) => ApiError::NotFound(format!("No transaction \"{id}\".")),
            LabelError::Invalid { field, reason } => ApiError::field(field, reason),
            LabelError::NotApplicable(why) => ApiError::LabelNotApplicable(format!("Transaction {why}.")),
            LabelError::Busy(id) => ApiError::Unavailable(format!("transaction {id}: its label kept changing; retry")),
            LabelError::Store(s) => s.into(),
        }
    }
}

#[derive(Serialize)]
struct LabelledView<'a> {
    transaction_id: &'a str,
    outcome: LabelOutcome,
    /// The label the transaction carries now (for `superseded`, the later one that stands).
    label: Option<LabelView<'a>>,
}

/// Credential, media type and size first; then the body, parsed in full; then one label.
pub async fn label<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_id: &str,
) -> Result<Response<Body>, ApiError> {
    let p = auth::principal(app, req.headers(), Scope::LabelsWrite).await?;
    check_json(req.headers())?;
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_LABEL_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            size: body.len(),
            limit: MAX_LABEL_BODY_BYTES,
        });
    }
    let id = TransactionId::parse(raw_id).map_err(|e| ApiError::field("id", e.reason))?;
    let request = LabelRequest::parse_json(&id, body)
        .map_err(|errors| ApiError::Validation(errors.into_iter().map(|(f, m)| field_error(f, m)).collect()))?;
    let done = label_transaction(&app.scorer.store, &p.tenant, &p.key_id, &request).await?;
    Ok(ok(
        &LabelledView {
            transaction_id: id.as_str(),
            outcome: done.outcome,
            label: done.label.as_ref().map(LabelView::new),
        },
        cx.request_id,
    ))
}
