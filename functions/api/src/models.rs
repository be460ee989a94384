//! `/v1/models…`: which model serves, and the registry entries. Each route parses, calls
//! [`ModelActivation`], and maps the answer to HTTP.

use crate::auth;
use crate::cursor::Listing;
use crate::problem::ApiError;
use crate::request::{Ctx, PageParams};
use crate::response::ok;
use crate::store::ApiStore;
use crate::views::{ActiveModelView, ModelView, PageView};
use crate::App;
use lambda_http::{Body, Request, Response};
use verdict::app::models::{Activated, ActivationError, ModelActivation};
use verdict::domain::auth::{Principal, Scope};
use verdict::domain::registry::ModelStatus;
use verdict::ports::{ActiveModel, ModelBlobs};

/// Names the fallback model's uploader in views: it came with the deployment.
const FALLBACK_UPLOADER: &str = "deployment (VERDICT_MODEL_PATH)";

async fn principal<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    scope: Scope,
) -> Result<Principal, ApiError> {
    auth::principal(app, req.headers(), scope).await
}

/// The service over the scorer's store, blobs and model cache.
fn models<S: ApiStore, B: ModelBlobs>(app: &App<S, B>) -> ModelActivation<'_, S, B> {
    ModelActivation::new(&app.scorer.store, &app.scorer.blobs, &app.scorer.models)
}

impl From<ActivationError> for ApiError {
    fn from(e: ActivationError) -> Self {
        match e {
            ActivationError::UnknownVersion(_) => ApiError::NotFound(e.to_string()),
            ActivationError::Store(s) => s.into(),
            e => ApiError::Conflict(e.to_string()),
        }
    }
}

/// `GET /v1/models/active`: the pointer's model, else the function's fallback, else 404.
pub async fn active<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let principal = principal(app, req, Scope::ModelsRead).await?;
    let Some(serving) = models(app).serving(&principal.tenant).await? else {
        return match &app.scorer.fallback {
            Some(model) => Ok(ok(
                &ActiveModelView {
                    model: ModelView::loaded(model, FALLBACK_UPLOADER),
                    activated_at: app.started_at.to_rfc3339(),
                    previous_version: None,
                },
                cx.request_id,
            )),
            None => Err(ApiError::NotFound(
                "No model has been activated for this tenant.".into(),
            )),
        };
    };
    let pointer = serving.pointer;
    let model = match serving.entry {
        Some(entry) => ModelView::registered(&entry, ModelStatus::Active),
        // A pointer without its registry entry: describe the artifact it points at.
        None => {
            let active = ActiveModel {
                version: pointer.version.clone(),
                object_key: pointer.object_key.clone(),
            };
            let loaded = app.scorer.model_for(Some(&active)).await?;
            ModelView::loaded(&loaded, "unknown")
        }
    };
    let view = ActiveModelView {
        model,
        activated_at: pointer.activated_at.to_rfc3339(),
        previous_version: pointer.previous_version,
    };
    Ok(ok(&view, cx.request_id))
}

/// `GET /v1/models/{id}`: another tenant's model is simply not found.
pub async fn get<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let principal = principal(app, req, Scope::ModelsRead).await?;
    check_id(id)?;
    let Some(listed) = models(app).entry(&principal.tenant, id).await? else {
        return Err(ActivationError::UnknownVersion(id.to_owned()).into());
    };
    Ok(ok(&ModelView::registered(&listed.entry, listed.status), cx.request_id))
}

/// `GET /v1/models?limit=…&cursor=…`: the registry, newest upload first.
pub async fn list<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let principal = principal(app, req, Scope::ModelsRead).await?;
    let mut errors = Vec::new();
    let Some(params) = PageParams::parse(&cx.query(), &mut errors).filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let listing = Listing {
        tenant: &principal.tenant,
        kind: "models",
        scope: &[],
    };
    let position = app.cursors.open(&listing, params.cursor.as_deref())?;
    let page = models(app)
        .page(&principal.tenant, params.limit, position.as_deref())
        .await?;
    let view = PageView {
        items: page
            .items
            .iter()
            .map(|l| ModelView::registered(&l.entry, l.status))
            .collect(),
        next_cursor: app.cursors.seal(&listing, page.next_cursor)?,
    };
    Ok(ok(&view, cx.request_id))
}

/// `POST /v1/models/{id}/activate`. Scoring reads the pointer on every decision, so the next
/// request is served by this model.
pub async fn activate<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let principal = principal(app, req, Scope::ModelsWrite).await?;
    check_id(id)?;
    let activated = models(app).activate(&principal.tenant, id).await?;
    Ok(ok(&activated_view(activated), cx.request_id))
}

/// `POST /v1/models/rollback`: back to `previous_version`; a second rollback undoes the first.
pub async fn rollback<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let principal = principal(app, req, Scope::ModelsWrite).await?;
    let activated = models(app).rollback(&principal.tenant).await?;
    Ok(ok(&activated_view(activated), cx.request_id))
}

fn activated_view(a: Activated) -> ActiveModelView {
    ActiveModelView {
        model: ModelView::registered(&a.entry, ModelStatus::Active),
        activated_at: a.pointer.activated_at.to_rfc3339(),
        previous_version: a.pointer.previous_version,
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() != 16 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ApiError::field("id", "must be 16 lower-case hex digits"));
    }
    Ok(())
}
