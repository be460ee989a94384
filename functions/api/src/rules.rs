//! `/v1/rules…`, `/v1/rulesets…`, `/v1/lists…` and `/v1/audit`: each route authenticates, parses,
//! calls [`RulesService`] and maps the answer to HTTP.

use crate::auth;
use crate::cursor::Listing;
use crate::problem::ApiError;
use crate::request::{field_error, json_body, optional_json_body, Ctx, PageParams};
use crate::response::{json_response, ok, JSON};
use crate::store::ApiStore;
use crate::views::PageView;
use crate::App;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use verdict::app::rules::{ActiveRuleset, EntryInput, RulesError, RulesService, RulesetDraft};
use verdict::domain::auth::{Principal, Scope};
use verdict::domain::rules::{ListKind, RuleSpec};
use verdict::domain::{ListName, RuleId};
use verdict::ports::rules::ListChange;
use verdict::ports::ModelBlobs;

/// Rule and ruleset bodies: a ruleset names at most 200 rule ids.
const MAX_RULE_BODY_BYTES: usize = 16 * 1024;
/// List entry bodies: up to 1,000 entries with notes.
pub const MAX_LIST_BODY_BYTES: usize = 256 * 1024;

async fn principal<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    scope: Scope,
) -> Result<Principal, ApiError> {
    auth::principal(app, req.headers(), scope).await
}

fn service<S: ApiStore, B>(app: &App<S, B>) -> RulesService<'_, S> {
    RulesService::new(&app.scorer.store)
}

impl From<RulesError> for ApiError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Invalid(problems) => ApiError::RuleProblems(problems),
            RulesError::NotFound(what) => ApiError::NotFound(what),
            RulesError::Conflict(why) => ApiError::Conflict(why),
            RulesError::Store(s) => s.into(),
        }
    }
}

fn created<T: Serialize>(body: &T, request_id: &str) -> Response<Body> {
    json_response(StatusCode::CREATED, body, JSON, request_id)
}

fn page_params(cx: &Ctx<'_>) -> Result<PageParams, ApiError> {
    let mut errors = Vec::new();
    match PageParams::parse(&cx.query(), &mut errors) {
        Some(p) if errors.is_empty() => Ok(p),
        _ => Err(ApiError::Validation(errors)),
    }
}

// ---------------------------------------------------------------------------------------------
// Rules

/// `POST /v1/rules/validate`.
pub async fn validate<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesRead).await?;
    let spec: RuleSpecBody = json_body(req, MAX_RULE_BODY_BYTES)?;
    service(app).validate(&p.tenant, &spec.0).await?;
    Ok(ok(&serde_json::json!({"valid": true}), cx.request_id))
}

/// `POST /v1/rules`: 201 for a new version, 200 when the latest already said the same.
pub async fn save<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesWrite).await?;
    let spec: RuleSpecBody = json_body(req, MAX_RULE_BODY_BYTES)?;
    let saved = service(app).save_rule(&p.tenant, &p.key_id, spec.0).await?;
    Ok(if saved.created {
        created(&saved.rule, cx.request_id)
    } else {
        ok(&saved.rule, cx.request_id)
    })
}

/// `GET /v1/rules/{id}?version=N`.
pub async fn get<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_id: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesRead).await?;
    let mut errors = Vec::new();
    let id = RuleId::parse(raw_id)
        .map_err(|e| errors.push(field_error("id", e.reason)))
        .ok();
    let version = match cx.query().first("version") {
        None => None,
        Some(raw) => match raw.parse::<u32>() {
            Ok(v) if v >= 1 => Some(v),
            _ => {
                errors.push(field_error("version", "must be an integer of at least 1"));
                None
            }
        },
    };
    let (Some(id), true) = (id, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let rule = service(app).rule(&p.tenant, &id, version).await?;
    Ok(ok(&rule, cx.request_id))
}

/// `GET /v1/rules`: the latest version of each rule, by id.
pub async fn list<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesRead).await?;
    let params = page_params(cx)?;
    let listing = Listing {
        tenant: &p.tenant,
        kind: "rules",
        scope: &[],
    };
    let position = app.cursors.open(&listing, params.cursor.as_deref())?;
    let page = service(app).rules(&p.tenant, params.limit, position.as_deref()).await?;
    Ok(ok(
        &PageView {
            items: page.items,
            next_cursor: app.cursors.seal(&listing, page.next_cursor)?,
        },
        cx.request_id,
    ))
}

/// A rule body: `RuleSpec` with unknown fields refused.
struct RuleSpecBody(RuleSpec);

impl<'de> Deserialize<'de> for RuleSpecBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        const KNOWN: [&str; 7] = ["id", "name", "description", "expression", "action", "priority", "mode"];
        if let Some(k) = v.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(D::Error::custom(format!(
                "unknown field `{k}`, expected one of {}",
                KNOWN.join(", ")
            )));
        }
        RuleSpec::deserialize(serde_json::Value::Object(v))
            .map(RuleSpecBody)
            .map_err(D::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Rulesets

/// `POST /v1/rulesets`: a new draft.
pub async fn create_ruleset<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesWrite).await?;
    let draft: RulesetDraft = json_body(req, MAX_RULE_BODY_BYTES)?;
    let ruleset = service(app).create_ruleset(&p.tenant, &p.key_id, draft).await?;
    Ok(created(&ruleset, cx.request_id))
}

pub async fn get_ruleset<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_version: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesRead).await?;
    let version = ruleset_version(raw_version)?;
    Ok(ok(&service(app).ruleset(&p.tenant, version).await?, cx.request_id))
}

pub async fn list_rulesets<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesRead).await?;
    let params = page_params(cx)?;
    let listing = Listing {
        tenant: &p.tenant,
        kind: "rulesets",
        scope: &[],
    };
    let position = app.cursors.open(&listing, params.cursor.as_deref())?;
    let page = service(app)
        .rulesets(&p.tenant, params.limit, position.as_deref())
        .await?;
    Ok(ok(
        &PageView {
            items: page.items,
            next_cursor: app.cursors.seal(&listing, page.next_cursor)?,
        },
        cx.request_id,
    ))
}

pub async fn publish<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_version: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesWrite).await?;
    let version = ruleset_version(raw_version)?;
    Ok(ok(
        &service(app).publish(&p.tenant, &p.key_id, version).await?,
        cx.request_id,
    ))
}

/// The optional body of activate and rollback.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointerMove {
    /// Absent: move from the pointer as read; `null`: only if none is active.
    #[serde(default, deserialize_with = "present")]
    expected_active_version: Option<Option<u32>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

pub async fn activate<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_version: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesWrite).await?;
    let version = ruleset_version(raw_version)?;
    let body: PointerMove = optional_json_body(req, MAX_RULE_BODY_BYTES)?;
    let active = service(app)
        .activate(&p.tenant, &p.key_id, version, body.expected_active_version)
        .await?;
    Ok(ok(&ActiveView::from(active), cx.request_id))
}

pub async fn rollback<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesWrite).await?;
    let body: PointerMove = optional_json_body(req, MAX_RULE_BODY_BYTES)?;
    let active = service(app)
        .rollback(&p.tenant, &p.key_id, body.expected_active_version)
        .await?;
    Ok(ok(&ActiveView::from(active), cx.request_id))
}

pub async fn active<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesRead).await?;
    match service(app).active(&p.tenant).await? {
        Some(active) => Ok(ok(&ActiveView::from(active), cx.request_id)),
        None => Err(ApiError::NotFound(
            "No ruleset is active for this tenant; decisions use the score thresholds alone.".into(),
        )),
    }
}

/// `ActiveRuleset`.
#[derive(Serialize)]
struct ActiveView {
    ruleset: verdict::domain::rules::Ruleset,
    activated_by: String,
    activated_at: verdict::domain::Timestamp,
    previous_version: Option<u32>,
}

impl From<ActiveRuleset> for ActiveView {
    fn from(a: ActiveRuleset) -> Self {
        ActiveView {
            ruleset: a.ruleset,
            activated_by: a.pointer.activated_by,
            activated_at: a.pointer.activated_at,
            previous_version: a.pointer.previous_version,
        }
    }
}

fn ruleset_version(raw: &str) -> Result<u32, ApiError> {
    match raw.parse::<u32>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(ApiError::field("version", "must be an integer of at least 1")),
    }
}

// ---------------------------------------------------------------------------------------------
// Lists

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDraft {
    name: String,
    kind: Option<ListKind>,
    #[serde(default)]
    description: String,
}

/// `POST /v1/lists`: 201 for a new list, 200 when it existed as asked.
pub async fn create_list<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::ListsWrite).await?;
    let draft: ListDraft = json_body(req, MAX_RULE_BODY_BYTES)?;
    let mut errors = Vec::new();
    let name = ListName::parse(&draft.name)
        .map_err(|e| errors.push(field_error("name", e.reason)))
        .ok();
    if draft.kind.is_none() {
        errors.push(field_error("kind", "is missing"));
    }
    let (Some(name), Some(kind), true) = (name, draft.kind, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let service = service(app);
    let existed = service.list(&p.tenant, &name).await.is_ok();
    let meta = service
        .create_list(&p.tenant, &p.key_id, name, kind, draft.description)
        .await?;
    Ok(if existed {
        ok(&meta, cx.request_id)
    } else {
        created(&meta, cx.request_id)
    })
}

pub async fn lists<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesRead).await?;
    let items = service(app).lists(&p.tenant).await?;
    Ok(ok(&serde_json::json!({ "items": items }), cx.request_id))
}

pub async fn get_list<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_name: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesRead).await?;
    let name = list_name(raw_name)?;
    Ok(ok(&service(app).list(&p.tenant, &name).await?, cx.request_id))
}

pub async fn entries<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_name: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesRead).await?;
    let name = list_name(raw_name)?;
    let params = page_params(cx)?;
    let listing = Listing {
        tenant: &p.tenant,
        kind: "entries",
        scope: &[name.as_str()],
    };
    let position = app.cursors.open(&listing, params.cursor.as_deref())?;
    let page = service(app)
        .entries(&p.tenant, &name, params.limit, position.as_deref())
        .await?;
    Ok(ok(
        &PageView {
            items: page.items,
            next_cursor: app.cursors.seal(&listing, page.next_cursor)?,
        },
        cx.request_id,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddEntries {
    entries: Vec<EntryInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveEntries {
    values: Vec<String>,
}

pub async fn add_entries<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_name: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::ListsWrite).await?;
    let name = list_name(raw_name)?;
    let body: AddEntries = json_body(req, MAX_LIST_BODY_BYTES)?;
    let change = service(app)
        .add_entries(&p.tenant, &p.key_id, &name, body.entries)
        .await?;
    Ok(ok(&ChangeView::from(change), cx.request_id))
}

pub async fn remove_entries<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_name: &str,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::ListsWrite).await?;
    let name = list_name(raw_name)?;
    let body: RemoveEntries = json_body(req, MAX_LIST_BODY_BYTES)?;
    let change = service(app)
        .remove_entries(&p.tenant, &p.key_id, &name, body.values)
        .await?;
    Ok(ok(&ChangeView::from(change), cx.request_id))
}

/// `ListChange`.
#[derive(Serialize)]
struct ChangeView {
    added: u64,
    updated: u64,
    removed: u64,
    absent: u64,
    version: u64,
    entries: u64,
}

impl From<ListChange> for ChangeView {
    fn from(c: ListChange) -> Self {
        ChangeView {
            added: c.added,
            updated: c.updated,
            removed: c.removed,
            absent: c.absent,
            version: c.version,
            entries: c.entries,
        }
    }
}

fn list_name(raw: &str) -> Result<ListName, ApiError> {
    ListName::parse(raw).map_err(|e| ApiError::field("name", e.reason))
}

// ---------------------------------------------------------------------------------------------
// Audit

/// `GET /v1/audit`: who changed what, newest first.
pub async fn audit<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let p = principal(app, req, Scope::RulesRead).await?;
    let params = page_params(cx)?;
    let listing = Listing {
        tenant: &p.tenant,
        kind: "audit",
        scope: &[],
    };
    let position = app.cursors.open(&listing, params.cursor.as_deref())?;
    let page = service(app)
        .audit_trail(&p.tenant, params.limit, position.as_deref())
        .await?;
    Ok(ok(
        &PageView {
            items: page.items,
            next_cursor: app.cursors.seal(&listing, page.next_cursor)?,
        },
        cx.request_id,
    ))
}

// ---------------------------------------------------------------------------------------------
// Backtest

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum BacktestMode {
    /// Inline, unless the window holds more than an inline backtest replays: then a job.
    #[default]
    Inline,
    Job,
}

/// Longest window answered inline: 7 days are 112 day partitions to read.
const INLINE_WINDOW_DAYS: i64 = 7;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BacktestBody {
    from: String,
    to: String,
    #[serde(default)]
    mode: BacktestMode,
}

/// The 202 of a backtest that runs as a job.
#[derive(Debug, Serialize)]
struct BacktestQueued {
    id: String,
    status: &'static str,
    result_url: String,
}

/// `POST /v1/rulesets/{version}/backtest`: replays the ruleset over the stored decisions of
/// `[from, to)`, inline (reads only), or as a job whose result `GET /v1/backtests/{id}`
/// answers: for `mode: job`, or when the window is too large to answer inline.
pub async fn backtest<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_version: &str,
) -> Result<Response<Body>, ApiError> {
    use verdict::app::backtest::{backtest, BacktestError, BacktestRequest, Window, MAX_INLINE_DECISIONS};
    let p = principal(app, req, Scope::RulesRead).await?;
    let version = ruleset_version(raw_version)?;
    let body: BacktestBody = json_body(req, MAX_RULE_BODY_BYTES)?;
    let mut errors = Vec::new();
    let mut time = |field: &'static str, raw: &str| {
        verdict::domain::Timestamp::parse(field, raw)
            .map_err(|e| errors.push(field_error(field, e.reason)))
            .ok()
    };
    let (from, to) = (time("from", &body.from), time("to", &body.to));
    let (Some(from), Some(to), true) = (from, to, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    // A job costs up to 15 minutes of a function: starting one needs the write scope.
    let long = to.unix() - from.unix() > INLINE_WINDOW_DAYS * 86_400;
    if body.mode == BacktestMode::Job || long {
        principal(app, req, Scope::RulesWrite).await?;
    }
    let window = Window::new(from, to);
    // Past a week the day partitions alone would take the inline run past the api's timeout.
    let mode = if long { BacktestMode::Job } else { body.mode };
    let result = match (window, mode) {
        (Ok(window), BacktestMode::Inline) => {
            backtest(&app.scorer.store, &p.tenant, version, window, MAX_INLINE_DECISIONS).await
        }
        // A job for a ruleset that is not there would only fail later.
        (Ok(_), BacktestMode::Job) => match app.scorer.store.ruleset(&p.tenant, version).await? {
            Some(_) => Err(BacktestError::TooLarge {
                limit: MAX_INLINE_DECISIONS,
            }),
            None => Err(BacktestError::NotFound(format!("No ruleset version {version}."))),
        },
        (Err(e), _) => Err(e),
    };
    match result {
        Ok(report) => Ok(ok(&report, cx.request_id)),
        Err(BacktestError::TooLarge { .. }) => {
            // Any job (asked for, long, or too many decisions to answer inline) needs the write scope.
            principal(app, req, Scope::RulesWrite).await?;
            let Some(queue) = &app.backtests else {
                return Err(ApiError::Unavailable(
                    "backtest jobs are not configured (DATA_BUCKET is not set)".into(),
                ));
            };
            let request = BacktestRequest {
                version,
                from,
                to,
                requested_by: p.key_id.clone(),
                requested_at: verdict::domain::Timestamp::now(),
            };
            let id = queue.start(&p.tenant, &request).await.map_err(job_error)?;
            let result_url = format!("/v1/backtests/{id}");
            let mut response = json_response(
                StatusCode::ACCEPTED,
                &BacktestQueued {
                    id: id.to_string(),
                    status: "queued",
                    result_url: result_url.clone(),
                },
                JSON,
                cx.request_id,
            );
            if let Ok(v) = lambda_http::http::HeaderValue::from_str(&result_url) {
                response.headers_mut().insert(lambda_http::http::header::LOCATION, v);
            }
            Ok(response)
        }
        Err(BacktestError::Invalid { field, message }) => Err(ApiError::field(field, message)),
        Err(BacktestError::NotFound(what)) => Err(ApiError::NotFound(what)),
        Err(BacktestError::Unusable(why)) => Err(ApiError::Conflict(why)),
        Err(BacktestError::Store(s)) => Err(s.into()),
    }
}

fn job_error(e: verdict::app::backtest::BacktestJobError) -> ApiError {
    match e {
        verdict::app::backtest::BacktestJobError::Store(s) => s.into(),
        other => ApiError::Internal(other.to_string()),
    }
}

/// `GET /v1/backtests/{id}`: the job's result once written, else its state. Another tenant's
/// id, or one never issued, is a 404 (the tenant is part of every key read).
pub async fn get_backtest<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
    raw_id: &str,
) -> Result<Response<Body>, ApiError> {
    use verdict::app::backtest::{BacktestId, BacktestState};
    let p = principal(app, req, Scope::RulesRead).await?;
    let not_found = || {
        ApiError::NotFound(format!(
            "No backtest {:?}.",
            raw_id.chars().take(64).collect::<String>()
        ))
    };
    let (Some(id), Some(queue)) = (BacktestId::parse(raw_id), &app.backtests) else {
        return Err(not_found());
    };
    let state = queue
        .state(&p.tenant, &id)
        .await
        .map_err(job_error)?
        .ok_or_else(not_found)?;
    let mut body = match state {
        BacktestState::Finished(serde_json::Value::Object(result)) => result,
        BacktestState::Finished(other) => {
            return Err(ApiError::Internal(format!(
                "backtest {id}: the result is not an object: {other}"
            )))
        }
        BacktestState::Queued => serde_json::Map::from_iter([("status".into(), "queued".into())]),
        BacktestState::Running { started_at } => serde_json::Map::from_iter([
            ("status".into(), "running".into()),
            ("started_at".into(), started_at.to_rfc3339().into()),
        ]),
        BacktestState::Failed { error } => {
            serde_json::Map::from_iter([("status".into(), "failed".into()), ("error".into(), error.into())])
        }
    };
    body.insert("id".into(), id.to_string().into());
    Ok(ok(&body, cx.request_id))
}
