//! [`JwksSource`] over HTTPS: hyper 1 with rustls and the system's roots (the stack the AWS SDK
//! already links). Bounded in time and size; plain http only reaches the loopback host, which
//! `domain::oidc::check_jwks_url` enforces before any fetch.

use crate::app::oidc::MAX_JWKS_BYTES;
use crate::ports::oidc::{JwksFetchError, JwksSource};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

/// Well inside the api's 10 s, and a slow issuer only delays the request that refreshes.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(2);

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Built on the first fetch, so a container that never sees a JWT never loads the roots.
pub struct HttpJwks {
    client: OnceLock<Result<HttpsClient, String>>,
    pub timeout: Duration,
}

impl Default for HttpJwks {
    fn default() -> Self {
        HttpJwks {
            client: OnceLock::new(),
            timeout: JWKS_FETCH_TIMEOUT,
        }
    }
}

impl HttpJwks {
    fn client(&self) -> Result<&HttpsClient, String> {
        self.client
            .get_or_init(|| {
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| format!("no TLS roots: {e}"))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Ok(Client::builder(TokioExecutor::new()).build(https))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let client = self.client()?;
        let uri: hyper::Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
        let req = hyper::Request::get(uri)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = client.request(req).await.map_err(|e| format!("request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?;
        Ok(body.to_bytes().to_vec())
    }
}

impl JwksSource for HttpJwks {
    fn fetch<'a>(&'a self, url: &'a str) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, JwksFetchError>> + Send + 'a>> {
        Box::pin(async move {
            let reason = match tokio::time::timeout(self.timeout, self.get(url)).await {
                Ok(Ok(bytes)) => return Ok(bytes),
                Ok(Err(reason)) => reason,
                Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
            };
            Err(JwksFetchError {
                url: url.to_owned(),
                reason,
            })
        })
    }
}
