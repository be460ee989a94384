//! Bearer API keys: parsing the header, the per-container key cache, and the fresh lookup.

use crate::problem::ApiError;
use lambda_http::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use verdict::domain::auth::{now_epoch, ApiKey, AuthError, KeyHash, KeyRecord, Principal, Scope};
use verdict::ports::DecisionStore;

/// How long a looked-up key is trusted to name its tenant (docs/dynamodb.md, "Caching").
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(60);
/// A container serves few keys; past this the cache starts over rather than grow.
const KEY_CACHE_MAX: usize = 1024;

/// The hash of the bearer key. The key itself is dropped here and never logged.
pub fn bearer_hash(headers: &HeaderMap) -> Result<KeyHash, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::Missing.into());
    };
    let key = value
        .to_str()
        .ok()
        .and_then(ApiKey::from_bearer)
        .ok_or(ApiError::Unauthenticated {
            detail: "The Authorization header is not \"Bearer <API key>\".",
            missing: false,
        })?;
    Ok(key.hash())
}

/// `KeyHash → KeyRecord`, for at most [`KEY_CACHE_TTL`]. Only successful lookups are cached.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<KeyHash, (Instant, KeyRecord)>>,
}

impl KeyCache {
    /// A panic while the lock was held leaves whole entries behind (each change is one
    /// insert or remove): go on with them rather than losing the cache for the container's life.
    fn entries(&self) -> MutexGuard<'_, HashMap<KeyHash, (Instant, KeyRecord)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, hash: &KeyHash) -> Option<KeyRecord> {
        let entries = self.entries();
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
        let principal = rec.authenticate(now_epoch()).inspect_err(|_| self.evict(hash))?;
        principal.require(scope)?;
        Ok(principal)
    }
}

/// The principal for `hash`, read from the store now (routes that do not score).
pub async fn fresh_principal<S: DecisionStore>(store: &S, hash: &KeyHash, scope: Scope) -> Result<Principal, ApiError> {
    let rec = store.key(hash).await?.ok_or(AuthError::Invalid)?;
    let principal = rec.authenticate(now_epoch())?;
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
            bearer_hash(&h),
            Err(ApiError::Unauthenticated { missing: true, .. })
        ));
        let key = ApiKey::generate();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", key.expose())).unwrap(),
        );
        assert_eq!(bearer_hash(&h).unwrap(), key.hash());
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer sk_live_123", "vk_abc"] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            match bearer_hash(&h) {
                Err(e @ ApiError::Unauthenticated { missing: false, .. }) => {
                    let body = e.to_response("/", "r").into_body();
                    let body = String::from_utf8_lossy(body.as_ref()).into_owned();
                    assert!(!body.contains("dXNlcjpwYXNz") && !body.contains("sk_live") && !body.contains("vk_abc"));
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
