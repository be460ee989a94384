//! `/v1/models…`: which model serves, and the registry entries.

use crate::auth::{bearer_hash, fresh_principal};
use crate::problem::ApiError;
use crate::request::{Ctx, PageParams};
use crate::response::ok;
use crate::store::ApiStore;
use crate::views::{ActiveModelView, ModelView, PageView};
use crate::App;
use lambda_http::{Body, Request, Response};
use std::sync::Arc;
use verdict::adapters::dynamodb::STATUS_REJECTED;
use verdict::adapters::RegistryEntry;
use verdict::domain::auth::{Principal, Scope};
use verdict::domain::model::Model;
use verdict::ports::{ActiveModel, ModelBlobs, StoreError};

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
    check_id(id)?;
    let store = &app.scorer.store;
    let Some(model) = store.registered_model(&principal.tenant, id).await? else {
        return Err(ApiError::NotFound(format!("No model \"{id}\".")));
    };
    let pointer = store.model_pointer(&principal.tenant).await?;
    Ok(ok(&ModelView::registered(&model, pointer.as_ref()), cx.request_id))
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
    let store = &app.scorer.store;
    let page = store
        .registered_models(&principal.tenant, params.limit, params.cursor.as_deref())
        .await
        .map_err(|e| match e {
            StoreError::BadCursor => ApiError::field("cursor", "was not issued for this query"),
            e => e.into(),
        })?;
    let pointer = store.model_pointer(&principal.tenant).await?;
    let view = PageView {
        items: page
            .items
            .iter()
            .map(|m| ModelView::registered(m, pointer.as_ref()))
            .collect(),
        next_cursor: page.next_cursor,
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
    let store = &app.scorer.store;
    let Some(entry) = store.registered_model(&principal.tenant, id).await? else {
        return Err(ApiError::NotFound(format!("No model \"{id}\".")));
    };
    let current = store.model_pointer(&principal.tenant).await?.map(|p| p.version);
    switch_to(app, &principal, &entry, current.as_deref(), cx).await
}

/// `POST /v1/models/rollback`: back to `previous_version`; a second rollback undoes the first.
pub async fn rollback<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let principal = principal(app, req, Scope::ModelsWrite).await?;
    let store = &app.scorer.store;
    let Some(pointer) = store.model_pointer(&principal.tenant).await? else {
        return Err(ApiError::Conflict(
            "No model is active for this tenant, so there is nothing to roll back.".into(),
        ));
    };
    let Some(previous) = pointer.previous_version else {
        return Err(ApiError::Conflict(format!(
            "Model \"{}\" is active and no model was active before it.",
            pointer.version
        )));
    };
    let Some(entry) = store.registered_model(&principal.tenant, &previous).await? else {
        return Err(ApiError::Conflict(format!(
            "The previous model \"{previous}\" is no longer in the registry."
        )));
    };
    switch_to(app, &principal, &entry, Some(&pointer.version), cx).await
}

/// Moves the pointer from `current` (as read by the caller) to `entry`. A rejected model, an
/// artifact that does not load, or a pointer or registration that changed meanwhile is a
/// conflict, and the serving model stays.
async fn switch_to<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    principal: &Principal,
    entry: &RegistryEntry,
    current: Option<&str>,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let m = &entry.model;
    if m.status == STATUS_REJECTED {
        let why = entry.reject_reason.as_deref().unwrap_or("no reason recorded");
        return Err(ApiError::Conflict(format!(
            "Model \"{}\" was rejected at import ({why}) and cannot be activated.",
            m.version
        )));
    }
    // This tenant's artifact, fetched and verified now (not a cached model of the same version):
    // a registration whose artifact does not load, or is another version, never serves.
    let unusable = |why: String| {
        ApiError::Conflict(format!(
            "Model \"{}\" cannot serve: {why}. The serving model stays.",
            m.version
        ))
    };
    let bytes = match app.scorer.blobs.fetch(&m.object_key).await {
        Ok(b) => b,
        Err(StoreError::Unavailable(cause)) => return Err(ApiError::Internal(cause)),
        Err(e) => return Err(unusable(e.to_string())),
    };
    let model = Model::from_bytes(&m.object_key, &bytes).map_err(|e| unusable(e.to_string()))?;
    if model.version() != m.version {
        return Err(unusable(format!(
            "its artifact {} is version {}",
            m.object_key,
            model.version()
        )));
    }
    app.scorer.models.insert(Arc::new(model));
    let pointer = match app
        .scorer
        .store
        .activate(&principal.tenant, &m.version, &m.object_key, current)
        .await
    {
        Ok(p) => p,
        Err(StoreError::Conflict(why)) => {
            return Err(ApiError::Conflict(format!(
                "The active model changed while this request ran ({why}); read it again and retry."
            )))
        }
        Err(StoreError::NotFound(_)) => {
            return Err(ApiError::Conflict(format!(
                "Model \"{}\" changed while it was being activated; retry.",
                m.version
            )))
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(tenant = %principal.tenant, version = %pointer.version, previous = ?pointer.previous_version, "model activated");
    let view = ActiveModelView {
        model: ModelView::registered(entry, Some(&pointer)),
        activated_at: pointer.activated_at.to_rfc3339(),
        previous_version: pointer.previous_version,
    };
    Ok(ok(&view, cx.request_id))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() != 16 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ApiError::field("id", "must be 16 lower-case hex digits"));
    }
    Ok(())
}
