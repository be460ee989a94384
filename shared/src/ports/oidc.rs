//! OIDC tokens: where issuers are configured, and how an issuer's keys (JWKS) are fetched.

use crate::domain::oidc::IssuerConfig;
use crate::ports::StoreError;
use std::future::Future;
use std::pin::Pin;

/// The configured issuers, by their `iss`.
pub trait IssuerStore: Send + Sync {
    fn issuer(&self, issuer: &str) -> impl Future<Output = Result<Option<IssuerConfig>, StoreError>> + Send;
}

/// Why a JWKS could not be fetched. Always a 503 at the edge: the token may well be fine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot fetch the JWKS at {url}: {reason}")]
pub struct JwksFetchError {
    pub url: String,
    pub reason: String,
}

/// The JWKS document's bytes at `url` (an https address, checked by `domain::oidc`). An
/// implementation bounds the time and the size it reads. Boxed: a fetch is rare, and the
/// handler's state stays free of another type parameter.
pub trait JwksSource: Send + Sync {
    fn fetch<'a>(&'a self, url: &'a str) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, JwksFetchError>> + Send + 'a>>;
}
