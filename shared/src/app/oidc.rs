//! Bearer JWTs: the issuer configuration cache and the per-issuer JWKS cache of one container,
//! and the verification of a token with them (`domain::oidc` does the checks).
//!
//! - An issuer's configuration is trusted for [`ISSUER_CACHE_TTL`], like an API key's record.
//! - An issuer's keys are fetched on first use and kept for [`JWKS_MAX_AGE`]. A token whose `kid`
//!   is not in them refetches, at most once per issuer per [`TokenVerifier::min_refresh`]: inside
//!   that window an unknown `kid` is a 401 without any fetch, so forged kids cannot make the
//!   container hammer the issuer.
//! - A fetch that fails is answered (503) for the rest of the window; earlier keys keep serving.
//! - An unknown `iss` is remembered for [`UNKNOWN_ISSUER_TTL`].
//! - Every cache is bounded in entries; past the bound the oldest entry is evicted.

use crate::domain::auth::{AuthError, Principal, Scope};
use crate::domain::oidc::{
    check_jwks_url, inspect, key_fits, verify, IssuerConfig, TokenError, ALLOW_LOOPBACK_HTTP_ENV,
};
use crate::ports::oidc::{IssuerStore, JwksFetchError, JwksSource};
use crate::ports::StoreError;
use jsonwebtoken::jwk::Jwk;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ISSUER_CACHE_TTL: Duration = Duration::from_secs(60);
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(30);
/// A JWKS larger than this is refused (an IdP publishes a handful of keys, a few KiB).
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Keys read from one JWKS at most.
pub const MAX_JWKS_KEYS: usize = 64;
const MAX_CACHED: usize = 64;
/// An unknown `iss` is remembered this long, for at most this many issuers.
pub const UNKNOWN_ISSUER_TTL: Duration = Duration::from_secs(60);
const MAX_UNKNOWN_ISSUERS: usize = 256;

/// Why a token gives no principal.
#[derive(Debug, thiserror::Error)]
pub enum TokenAuthError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The issuer's keys could not be fetched or read: 503, the token may be fine.
    #[error(transparent)]
    Jwks(#[from] JwksFetchError),
}

impl From<TokenError> for TokenAuthError {
    fn from(e: TokenError) -> Self {
        TokenAuthError::Auth(e.into())
    }
}

struct JwksEntry {
    /// The last keys fetched (empty before the first success), served stale while refreshes fail.
    keys: Arc<Vec<Jwk>>,
    fetched: Option<Instant>,
    attempted: Instant,
    /// Why the last fetch failed, answered (503) inside the refresh window.
    error: Option<JwksFetchError>,
}

/// Inserts `key`, first evicting the entry with the oldest time when the map is full: clearing
/// it instead would forget every issuer's refresh limit at once.
fn insert_bounded<V>(m: &mut HashMap<String, V>, key: &str, value: V, max: usize, at: impl Fn(&V) -> Instant) {
    if m.len() >= max && !m.contains_key(key) {
        if let Some(oldest) = m.iter().min_by_key(|(_, v)| at(v)).map(|(k, _)| k.clone()) {
            m.remove(&oldest);
        }
    }
    m.insert(key.to_owned(), value);
}

/// Whether plain http to the loopback host may be fetched: only when the operator (or the test
/// harness) sets [`ALLOW_LOOPBACK_HTTP_ENV`]` = 1`. In a Lambda, 127.0.0.1:9001 is the Runtime
/// API, so the deployed function never allows it (template.yaml does not set it).
pub fn loopback_http_allowed() -> bool {
    std::env::var(ALLOW_LOOPBACK_HTTP_ENV).is_ok_and(|v| v == "1")
}

pub struct TokenVerifier {
    source: Arc<dyn JwksSource>,
    issuers: Mutex<HashMap<String, (Instant, IssuerConfig)>>,
    jwks: Mutex<HashMap<String, JwksEntry>>,
    /// Issuers not configured, by when that was read.
    unknown: Mutex<HashMap<String, Instant>>,
    /// At most one JWKS fetch per issuer this often (tests shorten it).
    pub min_refresh: Duration,
}

/// The keys of a JWKS document that could verify RS256 or ES256; others (and keys this crate
/// cannot read) are skipped rather than failing the whole set.
pub fn parse_jwks(url: &str, bytes: &[u8]) -> Result<Vec<Jwk>, JwksFetchError> {
    let bad = |reason: &str| JwksFetchError {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(bad("the document is larger than 64 KiB"));
    }
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(bytes).map_err(|_| bad("not a JWKS document"))?;
    Ok(set
        .keys
        .into_iter()
        .take(MAX_JWKS_KEYS)
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .filter(|k| {
            k.common.key_id.is_some()
                && (key_fits(k, jsonwebtoken::Algorithm::RS256) || key_fits(k, jsonwebtoken::Algorithm::ES256))
        })
        .collect())
}

impl TokenVerifier {
    pub fn new(source: Arc<dyn JwksSource>) -> Self {
        TokenVerifier {
            source,
            issuers: Mutex::default(),
            jwks: Mutex::default(),
            unknown: Mutex::default(),
            min_refresh: DEFAULT_MIN_REFRESH,
        }
    }

    async fn issuer<S: IssuerStore>(&self, store: &S, iss: &str) -> Result<IssuerConfig, TokenAuthError> {
        if let Some((at, c)) = self.issuers.lock().ok().and_then(|m| m.get(iss).cloned()) {
            if at.elapsed() < ISSUER_CACHE_TTL {
                return Ok(c);
            }
        }
        // A recently unknown `iss` is refused without a GetItem (random issuers cost nothing, and
        // an unreadable issuer item is read, and its warning logged, once per window).
        if let Some(at) = self.unknown.lock().ok().and_then(|m| m.get(iss).copied()) {
            if at.elapsed() < UNKNOWN_ISSUER_TTL {
                return Err(TokenError::UnknownIssuer.into());
            }
        }
        let Some(config) = store.issuer(iss).await? else {
            if let Ok(mut m) = self.unknown.lock() {
                insert_bounded(&mut m, iss, Instant::now(), MAX_UNKNOWN_ISSUERS, |at| *at);
            }
            return Err(TokenError::UnknownIssuer.into());
        };
        if let Ok(mut m) = self.issuers.lock() {
            insert_bounded(&mut m, iss, (Instant::now(), config.clone()), MAX_CACHED, |(at, _)| *at);
        }
        if let Ok(mut m) = self.unknown.lock() {
            m.remove(iss);
        }
        Ok(config)
    }

    /// The key `kid` of the JWKS at `url`, fetching it when absent or stale, within the rate.
    ///
    /// An outage of the issuer is never the token's fault: after a failed fetch, the requests
    /// inside the refresh window answer that fetch's error (a 503) rather than "unknown key", and
    /// keys fetched earlier keep being served, stale, until a refresh succeeds.
    async fn key(&self, url: &str, kid: &str, alg: jsonwebtoken::Algorithm) -> Result<Jwk, TokenAuthError> {
        let find = |keys: &[Jwk]| {
            keys.iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid) && key_fits(k, alg))
                .cloned()
        };
        let (keys, fresh, may_fetch, last_error) = {
            let m = self.jwks.lock().map_err(|_| TokenError::UnknownKey)?;
            match m.get(url) {
                None => (Arc::default(), false, true, None),
                Some(e) => (
                    e.keys.clone(),
                    e.fetched.is_some_and(|t| t.elapsed() < JWKS_MAX_AGE),
                    e.attempted.elapsed() >= self.min_refresh,
                    e.error.clone().or_else(|| {
                        // Never fetched and no error yet: the first fetch is still in flight.
                        e.fetched.is_none().then(|| JwksFetchError {
                            url: url.to_owned(),
                            reason: "the issuer's keys are being fetched".to_owned(),
                        })
                    }),
                ),
            }
        };
        if fresh || !may_fetch {
            if let Some(k) = find(&keys) {
                return Ok(k);
            }
        }
        if !may_fetch {
            return Err(last_error.map_or(TokenError::UnknownKey.into(), TokenAuthError::Jwks));
        }
        // The attempt counts before the fetch, so concurrent requests do not all fetch.
        self.record(url, Instant::now(), None);
        let fetched = match check_jwks_url(url, loopback_http_allowed()) {
            Err(e) => Err(JwksFetchError {
                url: url.to_owned(),
                reason: e.reason,
            }),
            Ok(()) => match self.source.fetch(url).await {
                Ok(bytes) => parse_jwks(url, &bytes).map(Arc::new),
                Err(e) => Err(e),
            },
        };
        match fetched {
            Ok(new) => {
                self.record(url, Instant::now(), Some(Ok(new.clone())));
                find(&new).ok_or_else(|| TokenError::UnknownKey.into())
            }
            Err(e) => {
                self.record(url, Instant::now(), Some(Err(e.clone())));
                // A failed refresh keeps the keys it had: they were the issuer's a moment ago.
                find(&keys).ok_or(TokenAuthError::Jwks(e))
            }
        }
    }

    /// Notes a fetch attempt at `now` and, once it is done, its outcome.
    fn record(&self, url: &str, now: Instant, outcome: Option<Result<Arc<Vec<Jwk>>, JwksFetchError>>) {
        let Ok(mut m) = self.jwks.lock() else { return };
        if !m.contains_key(url) {
            let e = JwksEntry {
                keys: Arc::default(),
                fetched: None,
                attempted: now,
                error: None,
            };
            insert_bounded(&mut m, url, e, MAX_CACHED, |e| e.attempted);
        }
        let Some(e) = m.get_mut(url) else { return };
        e.attempted = now;
        match outcome {
            None => {}
            Some(Ok(keys)) => {
                e.keys = keys;
                e.fetched = Some(now);
                e.error = None;
            }
            Some(Err(err)) => e.error = Some(err),
        }
    }

    /// The principal of a bearer JWT at `now` (epoch seconds), with `scope` required.
    pub async fn principal<S: IssuerStore>(
        &self,
        store: &S,
        token: &str,
        scope: Scope,
        now: i64,
    ) -> Result<Principal, TokenAuthError> {
        let seen = inspect(token)?;
        let issuer = self.issuer(store, &seen.issuer).await?;
        let jwk = self.key(&issuer.jwks_url, &seen.kid, seen.alg).await?;
        let principal = verify(token, &seen, &jwk, &issuer, now)?;
        principal.require(scope)?;
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantId;
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::json;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// One configured issuer; counts the lookups.
    struct Issuers(IssuerConfig, AtomicUsize);
    impl IssuerStore for Issuers {
        async fn issuer(&self, iss: &str) -> Result<Option<IssuerConfig>, StoreError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Ok((iss == self.0.issuer).then(|| self.0.clone()))
        }
    }

    /// An in-memory JWKS endpoint that counts its fetches.
    struct Jwks {
        doc: Mutex<Result<String, String>>,
        fetches: AtomicUsize,
    }
    impl JwksSource for Jwks {
        fn fetch<'a>(
            &'a self,
            url: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, JwksFetchError>> + Send + 'a>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let doc = self.doc.lock().unwrap().clone();
            Box::pin(async move {
                doc.map(String::into_bytes).map_err(|reason| JwksFetchError {
                    url: url.to_owned(),
                    reason,
                })
            })
        }
    }

    struct Signer {
        key: EncodingKey,
        kid: String,
    }
    impl Signer {
        fn new(kid: &str) -> Signer {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            Signer {
                key: EncodingKey::from_ec_der(pkcs8.as_ref()),
                kid: kid.into(),
            }
        }
        fn jwk(&self) -> serde_json::Value {
            let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&self.key, Algorithm::ES256).unwrap()).unwrap();
            jwk["kid"] = json!(self.kid);
            jwk
        }
        fn sign(&self, claims: serde_json::Value) -> String {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(self.kid.clone());
            encode(&h, &claims, &self.key).unwrap()
        }
    }

    fn jwks_of(signers: &[&Signer]) -> String {
        json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()}).to_string()
    }

    const NOW: i64 = 1_800_000_000;

    fn setup() -> (Issuers, Arc<Jwks>, TokenVerifier) {
        let c = IssuerConfig::new(
            "https://idp.example/",
            "https://idp.example/jwks",
            "verdict",
            TenantId::parse("acme").unwrap(),
            None,
            None,
            None,
            None,
        )
        .unwrap();
        let jwks = Arc::new(Jwks {
            doc: Mutex::new(Err("not served yet".into())),
            fetches: AtomicUsize::new(0),
        });
        let v = TokenVerifier::new(jwks.clone());
        (Issuers(c, AtomicUsize::new(0)), jwks, v)
    }

    fn claims() -> serde_json::Value {
        json!({"iss": "https://idp.example/", "aud": "verdict", "sub": "alice", "tenant": "acme",
               "iat": NOW - 5, "exp": NOW + 300, "scope": "transactions:read"})
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio_free_block_on(f)
    }

    /// The futures here never wait on I/O, so polling them to completion needs no runtime.
    fn tokio_free_block_on<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    fn err(r: Result<Principal, TokenAuthError>) -> String {
        match r {
            Err(TokenAuthError::Auth(e)) => format!("auth: {e}"),
            Err(TokenAuthError::Jwks(e)) => format!("jwks: {e}"),
            Err(e) => format!("other: {e}"),
            Ok(p) => format!("ok: {}", p.key_id),
        }
    }

    #[test]
    fn keys_are_fetched_once_then_cached_and_an_unknown_kid_refetches_at_a_bounded_rate() {
        let (store, jwks, mut v) = setup();
        let a = Signer::new("a");
        *jwks.doc.lock().unwrap() = Ok(jwks_of(&[&a]));
        let t = a.sign(claims());
        for _ in 0..3 {
            let p = run(v.principal(&store, &t, Scope::TransactionsRead, NOW)).unwrap();
            assert_eq!(p.key_id, crate::domain::oidc::actor("https://idp.example/", "alice"));
            assert_eq!(p.tenant.as_str(), "acme");
        }
        assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "cached after the first fetch");

        // A rotated key inside the refresh window: a 401, and no fetch.
        let b = Signer::new("b");
        *jwks.doc.lock().unwrap() = Ok(jwks_of(&[&b]));
        let tb = b.sign(claims());
        let r = err(run(v.principal(&store, &tb, Scope::TransactionsRead, NOW)));
        assert!(r.contains("no usable key") || r.contains("no key"), "{r}");
        assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);
        // Once the window has passed, the unknown kid refetches and is accepted.
        v.min_refresh = Duration::ZERO;
        assert!(run(v.principal(&store, &tb, Scope::TransactionsRead, NOW)).is_ok());
        assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
        // The old key is gone from the new set.
        v.min_refresh = Duration::from_secs(3600);
        assert!(err(run(v.principal(&store, &t, Scope::TransactionsRead, NOW))).starts_with("auth:"));
    }

    #[test]
    fn a_failed_fetch_is_a_jwks_error_and_a_missing_scope_is_refused_after_verification() {
        let (store, jwks, v) = setup();
        let a = Signer::new("a");
        *jwks.doc.lock().unwrap() = Err("connection refused".into());
        let t = a.sign(claims());
        assert!(err(run(v.principal(&store, &t, Scope::TransactionsRead, NOW))).starts_with("jwks:"));
        // Not a JWKS, or too large: also the issuer's fault, not the token's.
        for doc in [
            "<html>",
            &format!("{{\"keys\":[],\"x\":\"{}\"}}", "a".repeat(MAX_JWKS_BYTES)),
        ] {
            assert!(parse_jwks("u", doc.as_bytes()).is_err());
        }
        let (store, jwks, v) = setup();
        *jwks.doc.lock().unwrap() = Ok(jwks_of(&[&a]));
        let r = run(v.principal(&store, &t, Scope::TransactionsWrite, NOW));
        assert!(matches!(
            r,
            Err(TokenAuthError::Auth(AuthError::MissingScope(Scope::TransactionsWrite)))
        ));
        let other = a.sign(json!({"iss": "https://other.example/", "aud": "verdict", "sub": "x",
                                  "tenant": "acme", "iat": NOW, "exp": NOW + 60}));
        assert!(err(run(v.principal(&store, &other, Scope::TransactionsRead, NOW))).contains("issuer"));
    }

    #[test]
    fn unusable_keys_in_a_jwks_are_skipped_not_fatal() {
        let a = Signer::new("a");
        let doc = json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "weird"},
            a.jwk(),
        ]});
        let keys = parse_jwks("u", doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].common.key_id.as_deref(), Some("a"));
    }

    #[test]
    fn an_issuer_outage_is_a_503_for_the_whole_refresh_window_never_an_unknown_key() {
        let (store, jwks, v) = setup();
        let a = Signer::new("a");
        *jwks.doc.lock().unwrap() = Err("connection refused".into());
        let t = a.sign(claims());
        for i in 0..2 {
            let r = err(run(v.principal(&store, &t, Scope::TransactionsRead, NOW)));
            assert!(
                r.starts_with("jwks:") && r.contains("connection refused"),
                "request {i}: {r}"
            );
        }
        assert_eq!(
            jwks.fetches.load(Ordering::SeqCst),
            1,
            "the second request is inside the window"
        );
    }

    #[test]
    fn a_failed_refresh_keeps_serving_the_keys_it_had() {
        let (store, jwks, mut v) = setup();
        let a = Signer::new("a");
        *jwks.doc.lock().unwrap() = Ok(jwks_of(&[&a]));
        let t = a.sign(claims());
        assert!(run(v.principal(&store, &t, Scope::TransactionsRead, NOW)).is_ok());
        // The keys go stale and the issuer goes down: the refresh fails, the old key still verifies.
        let long_ago = Instant::now()
            .checked_sub(JWKS_MAX_AGE + Duration::from_secs(1))
            .unwrap();
        for e in v.jwks.lock().unwrap().values_mut() {
            e.fetched = Some(long_ago);
            e.attempted = long_ago;
        }
        *jwks.doc.lock().unwrap() = Err("connection refused".into());
        v.min_refresh = Duration::ZERO;
        assert!(run(v.principal(&store, &t, Scope::TransactionsRead, NOW)).is_ok());
        assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2, "a refresh was tried");
        // A kid it never had is the outage's 503, not the token's 401.
        let b = Signer::new("b");
        let r = err(run(v.principal(
            &store,
            &b.sign(claims()),
            Scope::TransactionsRead,
            NOW,
        )));
        assert!(r.starts_with("jwks:"), "{r}");
        // Inside the window too (no fetch), the old key verifies and the unknown kid is a 503.
        v.min_refresh = Duration::from_secs(3600);
        assert!(run(v.principal(&store, &t, Scope::TransactionsRead, NOW)).is_ok());
        let r = err(run(v.principal(
            &store,
            &b.sign(claims()),
            Scope::TransactionsRead,
            NOW,
        )));
        assert!(r.starts_with("jwks:"), "{r}");
        assert_eq!(jwks.fetches.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_full_jwks_cache_evicts_its_oldest_entry_and_keeps_the_others_refresh_limits() {
        let (_, jwks, v) = setup();
        let t0 = Instant::now();
        for i in 0..MAX_CACHED {
            v.record(
                &format!("https://idp{i}.example/jwks"),
                t0 + Duration::from_millis(i as u64),
                None,
            );
        }
        v.record("https://new.example/jwks", t0 + Duration::from_secs(1), None);
        let m = v.jwks.lock().unwrap();
        assert_eq!(m.len(), MAX_CACHED);
        assert!(!m.contains_key("https://idp0.example/jwks"), "the oldest is evicted");
        assert!(m.contains_key("https://idp1.example/jwks") && m.contains_key("https://new.example/jwks"));
        drop(m);
        // The survivors are still rate-limited: a kid they lack costs no fetch.
        let a = Signer::new("a");
        let mut c = IssuerConfig::new(
            "https://idp1.example/",
            "https://idp1.example/jwks",
            "verdict",
            TenantId::parse("acme").unwrap(),
            None,
            None,
            None,
            None,
        )
        .unwrap();
        c.issuer = "https://idp.example/".into();
        let store = Issuers(c, AtomicUsize::new(0));
        let r = err(run(v.principal(
            &store,
            &a.sign(claims()),
            Scope::TransactionsRead,
            NOW,
        )));
        assert!(r.starts_with("jwks:"), "never fetched, attempt in the window: {r}");
        assert_eq!(jwks.fetches.load(Ordering::SeqCst), 0);

        let mut issuers = HashMap::new();
        for i in 0..3 {
            insert_bounded(&mut issuers, &i.to_string(), t0 + Duration::from_secs(i), 3, |t| *t);
        }
        insert_bounded(&mut issuers, "1", t0 + Duration::from_secs(9), 3, |t| *t);
        assert_eq!(issuers.len(), 3, "replacing a present key evicts nothing");
        insert_bounded(&mut issuers, "x", t0, 3, |t| *t);
        let mut left: Vec<_> = issuers.keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["1", "2", "x"]);
    }

    #[test]
    fn an_unknown_issuer_is_looked_up_once_per_window() {
        let (store, _, v) = setup();
        let a = Signer::new("a");
        let mut c = claims();
        c["iss"] = json!("https://random.example/");
        let t = a.sign(c);
        for _ in 0..5 {
            assert!(err(run(v.principal(&store, &t, Scope::TransactionsRead, NOW))).contains("issuer"));
        }
        assert_eq!(store.1.load(Ordering::SeqCst), 1);
        // Bounded: many random issuers never hold more than MAX_UNKNOWN_ISSUERS entries.
        for i in 0..MAX_UNKNOWN_ISSUERS + 10 {
            let mut c = claims();
            c["iss"] = json!(format!("https://r{i}.example/"));
            let _ = run(v.principal(&store, &a.sign(c), Scope::TransactionsRead, NOW));
        }
        assert_eq!(v.unknown.lock().unwrap().len(), MAX_UNKNOWN_ISSUERS);
    }
}
