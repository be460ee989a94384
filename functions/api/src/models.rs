//! `/v1/models…`: which model serves, and the registry entries.

use crate::auth::{bearer_hash, fresh_principal};
use crate::problem::ApiError;
use crate::request::Ctx;
use crate::response::ok;
use crate::store::ApiStore;
use crate::views::{ActiveModelView, ModelView};
use crate::App;
use lambda_http::{Body, Request, Response};
use verdict::auth::{Principal, Scope};
use verdict::ports::{ActiveModel, ModelBlobs};

/// Names the fallback model's uploader in views: it came with the deployment.
const FALLBACK_UPLOADER: &str = "deployment (VERDICT_MODEL_PATH)";

async fn principal<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    scope: Scope,
) -> Result<Principal, ApiError> {
    fresh_principal(&app.scorer.store, &bearer_hash(req.headers())?, scope).await
}

/// `GET /v1/models/active`: the pointer's model, else the function's fallback, else 404.
pub async fn active<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let principal = principal(app, req, Scope::ModelsRead).await?;
    let store = &app.scorer.store;
    let Some(pointer) = store.model_pointer(&principal.tenant).await? else {
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
    let model = match store.registered_model(&principal.tenant, &pointer.version).await? {
        Some(m) => ModelView::registered(&m, Some(&pointer)),
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
    if id.len() != 16 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ApiError::field("id", "must be 16 lower-case hex digits"));
    }
    let store = &app.scorer.store;
    let Some(model) = store.registered_model(&principal.tenant, id).await? else {
        return Err(ApiError::NotFound(format!("No model \"{id}\".")));
    };
    let pointer = store.model_pointer(&principal.tenant).await?;
    Ok(ok(&ModelView::registered(&model, pointer.as_ref()), cx.request_id))
}

/// `GET /v1/models`, `POST /v1/models/{id}/activate`, `POST /v1/models/rollback`: authenticated
/// and scope-checked like the rest, then 404 until the model-management issue lands.
pub async fn not_yet<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    scope: Scope,
) -> Result<Response<Body>, ApiError> {
    principal(app, req, scope).await?;
    Err(ApiError::NotFound(
        "Model management over HTTP is not available in this version; use the verdict CLI.".into(),
    ))
}
