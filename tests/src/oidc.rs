//! A local OIDC issuer for the tests: RSA and EC signing keys generated here, tokens signed with
//! them, and the JWKS served over plain HTTP on 127.0.0.1 by a tiny tokio server that counts
//! its requests and can be stopped (an issuer that is down).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One signing key and its key id.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
}

/// The content of a DER TLV at the start of `der`, and what follows it.
fn der_tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        let (bytes, rest) = (rest.get(..n)?, rest.get(n..)?);
        (bytes.iter().fold(0usize, |a, b| a << 8 | *b as usize), rest)
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// PKCS#8 `PrivateKeyInfo` → the PKCS#1 `RSAPrivateKey` inside it (what jsonwebtoken's
/// aws-lc backend reads).
fn pkcs1_of_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info, _) = der_tlv(pkcs8).expect("PrivateKeyInfo");
    let (_, _, rest) = der_tlv(info).expect("version");
    let (_, _, rest) = der_tlv(rest).expect("algorithm");
    let (tag, key, _) = der_tlv(rest).expect("privateKey");
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    key.to_vec()
}

impl SigningKey {
    pub fn rsa(kid: &str) -> SigningKey {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let pkcs8 = pair.as_der().expect("PKCS#8");
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            key: EncodingKey::from_rsa_der(&pkcs1_of_pkcs8(pkcs8.as_ref())),
        }
    }

    pub fn ec(kid: &str) -> SigningKey {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("EC key");
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        }
    }

    /// The public JWK, as an issuer publishes it.
    pub fn jwk(&self) -> Value {
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&self.key, self.alg).expect("JWK")).unwrap();
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        encode(&h, claims, &self.key).expect("sign")
    }
}

/// `header.payload.` with `alg: none`, and HS256 signed with the issuer's public JWK as the
/// secret: the two classic forgeries.
pub fn forged_none(kid: &str, claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": kid, "typ": "JWT"})),
        b64(claims)
    )
}

pub fn forged_hs256(public: &SigningKey, claims: &Value) -> String {
    let secret = public.jwk().to_string();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(public.kid.clone());
    encode(&h, claims, &EncodingKey::from_secret(secret.as_bytes()).unwrap()).expect("sign")
}

/// The JWKS endpoint on 127.0.0.1.
pub struct JwksServer {
    pub url: String,
    doc: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: &[&SigningKey]) -> JwksServer {
        // The api refuses plain-http JWKS unless told it runs under a test (a Lambda's loopback
        // is its Runtime API); this process is the test.
        std::env::set_var(verdict::domain::oidc::ALLOW_LOOPBACK_HTTP_ENV, "1");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let doc = Arc::new(Mutex::new(String::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, h) = (doc.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (d, h) = (d.clone(), h.clone());
                tokio::spawn(async move {
                    // One GET per connection; the request itself is not needed.
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    h.fetch_add(1, Ordering::SeqCst);
                    let body = d.lock().unwrap().clone();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        let server = JwksServer { url, doc, hits, task };
        server.publish(keys);
        server
    }

    pub fn publish(&self, keys: &[&SigningKey]) {
        *self.doc.lock().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string();
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops answering: new connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
