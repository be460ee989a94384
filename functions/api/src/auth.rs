//! Bearer credentials: API keys (the per-container key cache, and the fresh lookup) and OIDC
//! JWTs (verified by `verdict::app::oidc`), told apart by their shape.

use crate::problem::ApiError;
use crate::store::ApiStore;
use crate::App;
use lambda_http::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use verdict::app::oidc::TokenAuthError;
use verdict::domain::auth::{now_epoch, ApiKey, AuthError, KeyHash, KeyRecord, Principal, Scope};
use verdict::domain::oidc::looks_like_jwt;
use verdict::ports::{DecisionStore, ModelBlobs};

/// How long a looked-up key is trusted to name its tenant (docs/dynamodb.md, "Caching").
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(60);
/// A container serves few keys; past this the cache starts over rather than grow.
const KEY_CACHE_MAX: usize = 1024;

/// A bearer credential: an API key (only its hash is kept) or a JWT.
pub enum Bearer {
    Key(KeyHash),
    Token(String),
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bearer::Key(_) => "Bearer::Key(<hash>)",
            Bearer::Token(_) => "Bearer::Token(<redacted>)",
        })
    }
}

/// Reads `Authorization: Bearer …`. An API key (`vk_…`) is hashed and dropped here; a value of
/// a JWT's shape is a token. Neither is ever logged or echoed.
pub fn bearer(headers: &HeaderMap) -> Result<Bearer, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::Missing.into());
    };
    let malformed = || ApiError::Unauthenticated {
        detail: "The Authorization header is not \"Bearer <API key or OIDC token>\".",
        missing: false,
    };
    let raw = value.to_str().map_err(|_| malformed())?;
    if let Some(key) = ApiKey::from_bearer(raw) {
        return Ok(Bearer::Key(key.hash()));
    }
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| looks_like_jwt(t))
        .ok_or_else(malformed)?;
    Ok(Bearer::Token(token.to_owned()))
}

/// The principal of the request's credential, read now (routes that do not score): an API key
/// from the store, a token verified against its issuer's keys.
pub async fn principal<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Principal, ApiError> {
    match bearer(headers)? {
        Bearer::Key(hash) => fresh_principal(&app.scorer.store, &hash, scope).await,
        Bearer::Token(token) => token_principal(app, &token, scope).await,
    }
}

pub async fn token_principal<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    token: &str,
    scope: Scope,
) -> Result<Principal, ApiError> {
    app.tokens
        .principal(&app.scorer.store, token, scope, now_epoch())
        .await
        .map_err(|e| match e {
            TokenAuthError::Auth(e) => e.into(),
            TokenAuthError::Store(e) => e.into(),
            TokenAuthError::Jwks(e) => ApiError::Unavailable(e.to_string()),
        })
}

/// Whether the request's credential is genuine, whatever its scopes: so that a 401 wins over a
/// 400 found before a route authenticates (a path parameter that does not percent-decode).
/// The route then authenticates again with its own scope.
pub async fn authenticated<S: ApiStore, B: ModelBlobs>(app: &App<S, B>, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer(headers)? {
        Bearer::Key(hash) => {
            let rec = app.scorer.store.key(&hash).await?.ok_or(AuthError::Invalid)?;
            rec.authenticate(&hash, now_epoch())?;
            Ok(())
        }
        // The verifier checks one scope last, after the signature and claims: lacking it
        // still means the token is genuine.
        Bearer::Token(token) => match token_principal(app, &token, Scope::ModelsRead).await {
            Ok(_) | Err(ApiError::Forbidden(_)) => Ok(()),
            Err(e) => Err(e),
        },
    }
}

/// `KeyHash → KeyRecord`, for at most [`KEY_CACHE_TTL`]. Only successful lookups are cached.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<KeyHash, (Instant, KeyRecord)>>,
    /// Tests only (never in a release build, set by no request): called with the key's hash
    /// while the lock is held, so a test can panic inside the critical section.
    #[cfg(debug_assertions)]
    pub(crate) probe: Option<fn(&KeyHash)>,
}

impl KeyCache {
    /// A panic while the lock was held leaves whole entries behind (each change is one
    /// insert or remove): go on with them rather than losing the cache for the container's life.
    fn entries(&self) -> MutexGuard<'_, HashMap<KeyHash, (Instant, KeyRecord)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, hash: &KeyHash) -> Option<KeyRecord> {
        let entries = self.entries();
        #[cfg(debug_assertions)]
        if let Some(probe) = self.probe {
            probe(hash);
        }
        let (at, rec) = entries.get(hash)?;
        (at.elapsed() < KEY_CACHE_TTL).then(|| rec.clone())
    }

    fn put(&self, hash: KeyHash, rec: KeyRecord) {
        let mut entries = self.entries();
        if entries.len() >= KEY_CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (Instant::now(), rec));
    }

    /// Forgets a key the store has just refused.
    pub fn evict(&self, hash: &KeyHash) {
        self.entries().remove(hash);
    }

    /// The principal for `hash`, from the cache when fresh, else from the store.
    pub async fn principal<S: DecisionStore>(
        &self,
        store: &S,
        hash: &KeyHash,
        scope: Scope,
    ) -> Result<Principal, ApiError> {
        let rec = match self.get(hash) {
            Some(rec) => rec,
            None => {
                let rec = store.key(hash).await?.ok_or(AuthError::Invalid)?;
                self.put(hash.clone(), rec.clone());
                rec
            }
        };
        let principal = rec.authenticate(hash, now_epoch()).inspect_err(|_| self.evict(hash))?;
        principal.require(scope)?;
        Ok(principal)
    }
}

/// The principal for `hash`, read from the store now (routes that do not score).
pub async fn fresh_principal<S: DecisionStore>(store: &S, hash: &KeyHash, scope: Scope) -> Result<Principal, ApiError> {
    let rec = store.key(hash).await?.ok_or(AuthError::Invalid)?;
    let principal = rec.authenticate(hash, now_epoch())?;
    principal.require(scope)?;
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    #[test]
    fn a_panic_holding_the_key_cache_lock_does_not_disable_the_cache() {
        let cache = KeyCache::default();
        let key = ApiKey::generate();
        let rec = KeyRecord {
            key_id: key.key_id(),
            tenant: verdict::domain::TenantId::parse("acme").unwrap(),
            scopes: [Scope::ModelsRead].into(),
            created_at: now_epoch(),
            expires_at: None,
            revoked_at: None,
        };
        let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = cache.entries.lock().unwrap();
            panic!("a panic while the lock is held");
        }));
        assert!(poisoned.is_err() && cache.entries.is_poisoned());
        cache.put(key.hash(), rec.clone());
        assert_eq!(cache.get(&key.hash()).map(|r| r.key_id), Some(rec.key_id));
        cache.evict(&key.hash());
        assert!(cache.get(&key.hash()).is_none());
    }

    #[test]
    fn bearer_header_is_parsed_or_refused_without_echoing_it() {
        let mut h = HeaderMap::new();
        assert!(matches!(
            bearer(&h),
            Err(ApiError::Unauthenticated { missing: true, .. })
        ));
        let key = ApiKey::generate();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", key.expose())).unwrap(),
        );
        assert!(matches!(bearer(&h), Ok(Bearer::Key(k)) if k == key.hash()));
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {jwt}")).unwrap(),
        );
        assert!(matches!(bearer(&h), Ok(Bearer::Token(t)) if t == jwt));
        for bad in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer sk_live_123",
            "vk_abc",
            "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0",
            "Basic eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            match bearer(&h) {
                Err(e @ ApiError::Unauthenticated { missing: false, .. }) => {
                    let body = e.to_response("/", "r").into_body();
                    let body = String::from_utf8_lossy(body.as_ref()).into_owned();
                    assert!(
                        !body.contains("dXNlcjpwYXNz")
                            && !body.contains("sk_live")
                            && !body.contains("vk_abc")
                            && !body.contains("eyJzdWIiOiJ4In0")
                    );
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
