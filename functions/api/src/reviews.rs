//! `/v1/reviews…`: the review queue. Each route authenticates, parses, calls [`ReviewService`]
//! and maps the answer to HTTP.

use crate::auth;
use crate::cursor::Listing;
use crate::problem::ApiError;
use crate::request::{check_json, field_error, Ctx, PageParams};
use crate::response::ok;
use crate::store::ApiStore;
use crate::views::PageView;
use crate::App;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use verdict::app::reviews::{lease_secs, ReviewError, ReviewService};
use verdict::domain::auth::{Principal, Scope};
use verdict::domain::review::{ListAdded, Resolution, ResolveRequest, Review, ReviewEvent, ReviewSort, ReviewStatus};
use verdict::domain::{Timestamp, TransactionId};
use verdict::ports::ModelBlobs;

/// A resolve body: a note of at most 1,000 characters and at most 5 list names.
const MAX_REVIEW_BODY_BYTES: usize = 8 * 1024;

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::NotFound(what) => ApiError::NotFound(what),
            ReviewError::Conflict(why) => ApiError::Conflict(why),
            ReviewError::Invalid { field, reason } => ApiError::field(&field, reason),
            ReviewError::NotApplicable(why) => ApiError::LabelNotApplicable(why),
            ReviewError::Store(s) => s.into(),
        }
    }
}

async fn principal<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    scope: Scope,
) -> Result<Principal, ApiError> {
    auth::principal(app, req.headers(), scope).await
}

fn service<S: ApiStore, B>(app: &App<S, B>) -> ReviewService<'_, S> {
    ReviewService::new(&app.scorer.store)
}

fn review_id(raw: &str) -> Result<TransactionId, ApiError> {
    TransactionId::parse(raw).map_err(|e| ApiError::field("id", e.reason))
}

#[derive(Serialize)]
struct ClaimView<'a> {
    holder: &'a str,
    expires_at: String,
}

#[derive(Serialize)]
struct ListAddedView<'a> {
    list: &'a str,
    value: &'a str,
}

impl<'a> ListAddedView<'a> {
    fn all(l: &'a [ListAdded]) -> Vec<Self> {
        l.iter()
            .map(|l| ListAddedView {
                list: &l.list,
                value: &l.value,
            })
            .collect()
    }
}

/// `Review.resolution` of openapi.yaml.
#[derive(Serialize)]
struct ResolutionView<'a> {
    outcome: &'static str,
    label: &'static str,
    label_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    resolved_by: &'a str,
    resolved_at: String,
    lists_added: Vec<ListAddedView<'a>>,
}

impl<'a> ResolutionView<'a> {
    fn new(r: &'a Resolution) -> Self {
        ResolutionView {
            outcome: r.outcome.as_str(),
            label: r.label.as_str(),
            label_status: r.label_status.as_str(),
            note: r.note.as_deref(),
            resolved_by: &r.resolved_by,
            resolved_at: r.resolved_at.to_rfc3339(),
            lists_added: ListAddedView::all(&r.lists_added),
        }
    }
}

/// `Review.history[]` of openapi.yaml.
#[derive(Serialize)]
struct EventView<'a> {
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'a str>,
    at: String,
}

/// `Review` of openapi.yaml.
#[derive(Serialize)]
pub struct ReviewView<'a> {
    transaction_id: &'a str,
    status: &'static str,
    opened_at: String,
    risk_score: u8,
    /// Until resolution (or now, while open).
    seconds_in_queue: i64,
    claim: Option<ClaimView<'a>>,
    resolution: Option<ResolutionView<'a>>,
    /// A resolution is recorded and being carried out (a retry of resolve completes it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    resolution_pending: bool,
    /// On `GET /v1/reviews/{id}` and the changes' answers only, not on queue pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<EventView<'a>>>,
    /// On a resolve's answer: entries it did not add, already on their list (left as they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    lists_already_present: Option<Vec<ListAddedView<'a>>>,
    /// On a resolve's answer: entries it could not add, their list deleted or full since the check.
    #[serde(skip_serializing_if = "Option::is_none")]
    lists_skipped: Option<Vec<ListAddedView<'a>>>,
}

impl<'a> EventView<'a> {
    fn new(e: &'a ReviewEvent) -> Self {
        EventView {
            action: e.action.as_str(),
            by: e.by.as_deref(),
            at: e.at.to_rfc3339(),
        }
    }
}

impl<'a> ReviewView<'a> {
    /// A queue page's row: no history.
    fn row(r: &'a Review, now: Timestamp) -> Self {
        ReviewView {
            history: None,
            ..Self::new(r, now)
        }
    }

    fn new(r: &'a Review, now: Timestamp) -> Self {
        ReviewView {
            transaction_id: r.transaction_id.as_str(),
            status: r.status.as_str(),
            opened_at: r.opened_at.to_rfc3339(),
            risk_score: r.risk_score,
            seconds_in_queue: r.seconds_in_queue(now),
            // An expired claim is no claim; one whose expiry is no instant is left out.
            claim: r.live_claim(now.unix()).and_then(|c| {
                Some(ClaimView {
                    holder: &c.holder,
                    expires_at: Timestamp::from_unix(c.expires_at).ok()?.to_rfc3339(),
                })
            }),
            resolution: r.resolution.as_ref().map(ResolutionView::new),
            resolution_pending: r.pending.is_some(),
            history: Some(r.history.iter().map(EventView::new).collect()),
            lists_already_present: None,
            lists_skipped: None,
        }
    }
}

fn one(r: &Review, request_id: &str) -> Response<Body> {
    ok(&ReviewView::new(r, Timestamp::now()), request_id)
}

/// `GET /v1/reviews?status=open|resolved&sort=oldest|risk&limit=&cursor=`.
pub async fn list<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::ReviewsRead).await?;
    let query = cx.query();
    let mut errors = Vec::new();
    let status = match query.first("status") {
        None => Some(ReviewStatus::Open),
        Some(raw) => ReviewStatus::parse(raw)
            .map_err(|r| errors.push(field_error("status", r)))
            .ok(),
    };
    let sort = match query.first("sort") {
        None => Some(ReviewSort::Oldest),
        Some(raw) => ReviewSort::parse(raw)
            .map_err(|r| errors.push(field_error("sort", r)))
            .ok(),
    };
    let page = PageParams::parse(&query, &mut errors);
    let (Some(status), Some(sort), Some(page), true) = (status, sort, page, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let listing = Listing {
        tenant: &p.tenant,
        kind: "reviews",
        scope: &[
            status.as_str(),
            match sort {
                ReviewSort::Oldest => "oldest",
                ReviewSort::Risk => "risk",
            },
        ],
    };
    let position = app.cursors.open(&listing, page.cursor.as_deref())?;
    let found = service(app)
        .queue(&p.tenant, status, sort, page.limit, position.as_deref())
        .await?;
    let now = Timestamp::now();
    Ok(ok(
        &PageView {
            items: found.items.iter().map(|r| ReviewView::row(r, now)).collect(),
            next_cursor: app.cursors.seal(&listing, found.next_cursor)?,
        },
        cx.request_id,
    ))
}

/// `GET /v1/reviews/{id}`.
pub async fn get<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_id: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::ReviewsRead).await?;
    let id = review_id(raw_id)?;
    Ok(one(&service(app).get(&p.tenant, &id).await?, cx.request_id))
}

/// `POST /v1/reviews/{id}/claim` with an optional `{"lease_seconds": N}`.
pub async fn claim<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_id: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::ReviewsWrite).await?;
    let id = review_id(raw_id)?;
    let body: &[u8] = req.body().as_ref();
    let requested = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        check_json(req.headers())?;
        if body.len() > MAX_REVIEW_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge {
                size: body.len(),
                limit: MAX_REVIEW_BODY_BYTES,
            });
        }
        let v = crate::request::strict_json(body)?;
        let Some(o) = v.as_object() else {
            return Err(ApiError::field("body", "must be a JSON object"));
        };
        if let Some(k) = o.keys().find(|k| k.as_str() != "lease_seconds") {
            let k: String = k.chars().take(64).collect();
            return Err(ApiError::field("body", format!("unknown field {k:?}")));
        }
        match o.get("lease_seconds") {
            None | Some(serde_json::Value::Null) => None,
            Some(n) => Some(
                n.as_i64()
                    .ok_or_else(|| ApiError::field("lease_seconds", "must be an integer"))?,
            ),
        }
    };
    let lease = lease_secs(requested)?;
    Ok(one(
        &service(app).claim(&p.tenant, &id, &p.key_id, lease).await?,
        cx.request_id,
    ))
}

/// `POST /v1/reviews/{id}/release`.
pub async fn release<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_id: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::ReviewsWrite).await?;
    let id = review_id(raw_id)?;
    Ok(one(
        &service(app).release(&p.tenant, &id, &p.key_id).await?,
        cx.request_id,
    ))
}

/// `POST /v1/reviews/{id}/resolve` with `{outcome, label, note, add_to_list}`.
pub async fn resolve<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_id: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::ReviewsWrite).await?;
    check_json(req.headers())?;
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_REVIEW_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            size: body.len(),
            limit: MAX_REVIEW_BODY_BYTES,
        });
    }
    let id = review_id(raw_id)?;
    let request = ResolveRequest::parse_json(body)
        .map_err(|errors| ApiError::Validation(errors.into_iter().map(|(f, m)| field_error(&f, m)).collect()))?;
    // Adding to a block list is a list change: it needs the lists' scope too.
    if !request.add_to_list.is_empty() {
        p.require(Scope::ListsWrite)?;
    }
    let done = service(app).resolve(&p.tenant, &id, &p.key_id, request).await?;
    let mut view = ReviewView::new(&done.review, Timestamp::now());
    view.lists_already_present = Some(ListAddedView::all(&done.already_present)).filter(|l| !l.is_empty());
    view.lists_skipped = Some(ListAddedView::all(&done.skipped)).filter(|l| !l.is_empty());
    Ok(ok(&view, cx.request_id))
}
