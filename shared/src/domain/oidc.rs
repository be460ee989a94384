//! OIDC bearer tokens (JWTs) beside API keys: the issuer configuration and the verification of
//! one token against one issuer's keys. Pure: the keys (a JWKS document) are fetched and cached
//! by the app layer (`app::oidc`) through a port.

use crate::domain::auth::{AuthError, Principal, Scope};
use crate::domain::{DomainError, TenantId};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// The only signature algorithms accepted. Everything else (`none`, HS*, PS*, ES384, EdDSA) is
/// refused before any issuer or key is looked up: HS256 "signed" with a public key is the
/// classic confusion attack.
pub const ALLOWED_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 3_600;
pub const DEFAULT_LEEWAY_SECS: i64 = 60;
/// A token's lifetime may be configured up to a day: a "short-lived" credential longer than
/// that is an API key.
pub const MAX_MAX_LIFETIME_SECS: i64 = 86_400;
pub const MAX_LEEWAY_SECS: i64 = 300;
/// Longer than any JWT a sane issuer mints; the header is refused before parsing past this.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The recorded actor is `oidc:<sub>`; a longer `sub` is refused.
pub const MAX_SUBJECT_CHARS: usize = 128;

/// Why a token is refused. Mapped to 401 (403 for a missing scope) at the edge; the detail
/// never echoes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not RS256 or ES256")]
    Algorithm,
    #[error("the token names no key id (kid)")]
    NoKeyId,
    #[error("the token's issuer is not configured")]
    UnknownIssuer,
    #[error("the issuer has no key with the token's key id")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's audience is not this API")]
    Audience,
    #[error("the token's {0} claim is missing or malformed")]
    Claim(&'static str),
    #[error("the token lives longer (exp - iat) than its issuer allows")]
    TooLongLived,
    #[error("the token's tenant is not the one its issuer may authenticate")]
    OtherTenant,
}

impl TokenError {
    /// The problem's `detail`: says what failed, never what the token held.
    pub fn detail(&self) -> &'static str {
        match self {
            TokenError::Malformed => "The bearer token is not a well-formed JWT.",
            TokenError::Algorithm => "The token's algorithm is not RS256 or ES256.",
            TokenError::NoKeyId => "The token's header names no key id (kid).",
            TokenError::UnknownIssuer => "The token's issuer is not configured.",
            TokenError::UnknownKey => "The issuer publishes no usable key with the token's key id.",
            TokenError::Signature => "The token's signature does not verify.",
            TokenError::Expired => "The token has expired.",
            TokenError::NotYetValid => "The token is not valid yet (nbf or iat in the future).",
            TokenError::Audience => "The token's audience is not this API.",
            TokenError::Claim("exp") => "The token's exp claim is missing or malformed.",
            TokenError::Claim("iat") => "The token's iat claim is missing or malformed.",
            TokenError::Claim("sub") => "The token's sub claim is missing or malformed.",
            TokenError::Claim("iss") => "The token's iss claim is missing or malformed.",
            TokenError::Claim("tenant") => "The token's tenant claim is missing or malformed.",
            TokenError::Claim(_) => "The token's scope claim is malformed.",
            TokenError::TooLongLived => "The token lives longer (exp - iat) than its issuer allows.",
            TokenError::OtherTenant => "The token's tenant is not the one its issuer may authenticate.",
        }
    }
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> AuthError {
        AuthError::Token(e)
    }
}

/// One trusted issuer. It authenticates exactly one tenant: a token naming any other tenant in
/// its tenant claim is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The `iss` claim, exactly.
    pub issuer: String,
    /// Where its signing keys are published (https, or http on the loopback host in tests).
    pub jwks_url: String,
    /// The `aud` the token must carry.
    pub audience: String,
    pub tenant: TenantId,
    /// The claim naming the tenant (default `tenant`).
    pub tenant_claim: String,
    /// The claim with the scopes, space-separated or an array (default `scope`).
    pub scopes_claim: String,
    /// `exp - iat` at most this many seconds.
    pub max_lifetime_secs: i64,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway_secs: i64,
}

fn bad(field: &'static str, why: impl Into<String>) -> DomainError {
    DomainError::new(field, why.into())
}

/// A claim name: short, visible ASCII.
fn claim_name(field: &'static str, raw: &str) -> Result<String, DomainError> {
    let ok = !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| raw.to_owned()).ok_or_else(|| {
        bad(
            field,
            format!("{raw:?} is not a claim name (1-64 visible ASCII characters)"),
        )
    })
}

/// The environment setting that allows plain http JWKS addresses on the loopback host (the test
/// harness sets it to `1`; template.yaml never does: in a Lambda, 127.0.0.1:9001 is the Runtime API).
pub const ALLOW_LOOPBACK_HTTP_ENV: &str = "VERDICT_OIDC_ALLOW_LOOPBACK_HTTP";

/// Whether a literal IP may not be a JWKS host: loopback, private, link-local (the instance
/// metadata service), unspecified, shared (100.64/10) or unique-local.
fn internal_ip(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (seg0 & 0xfe00) == 0xfc00
                || (seg0 & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| internal_ip(v4.into()))
        }
    }
}

/// Checks a JWKS address: https to a public host; plain http only to the loopback host and only
/// when `allow_loopback_http` (from [`ALLOW_LOOPBACK_HTTP_ENV`]). A literal internal IP is refused
/// even over https; a DNS name is not resolved here, so one pointing inside is not caught.
pub fn check_jwks_url(raw: &str, allow_loopback_http: bool) -> Result<(), DomainError> {
    let fail = |why: &str| bad("jwks-url", format!("{raw:?} {why}"));
    if raw.len() > 2048 || !raw.is_ascii() || raw.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(fail("is not a URL"));
    }
    let (scheme, rest) = raw.split_once("://").ok_or_else(|| fail("is not an absolute URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(fail("has no host, or has credentials in it"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "::1");
    let literal_ip = host.parse::<std::net::IpAddr>().ok();
    match scheme {
        "https" if loopback || literal_ip.is_some_and(internal_ip) => Err(fail(
            "names a loopback, private or link-local address (refused: the function must not fetch inside its network)",
        )),
        "https" if host.is_empty() => Err(fail("has no host")),
        "https" => Ok(()),
        "http" if loopback && allow_loopback_http => Ok(()),
        "http" if loopback => Err(fail(&format!(
            "is plain http: allowed on the loopback host only when {ALLOW_LOOPBACK_HTTP_ENV}=1 (tests)"
        ))),
        "http" => Err(fail("must be https (plain http only on the loopback host, for tests)")),
        _ => Err(fail("must be an https URL")),
    }
}

impl IssuerConfig {
    /// Checks every field; `None` takes the defaults.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        issuer: &str,
        jwks_url: &str,
        audience: &str,
        tenant: TenantId,
        tenant_claim: Option<&str>,
        scopes_claim: Option<&str>,
        max_lifetime_secs: Option<i64>,
        leeway_secs: Option<i64>,
    ) -> Result<IssuerConfig, DomainError> {
        if issuer.is_empty() || issuer.len() > 1024 || issuer.chars().any(char::is_control) {
            return Err(bad(
                "issuer",
                format!("{issuer:?} is not an issuer (1-1024 characters)"),
            ));
        }
        // The shape only: whether loopback http may be fetched is decided where it is fetched
        // (and where an issuer is added), from the environment.
        check_jwks_url(jwks_url, true)?;
        if audience.is_empty() || audience.len() > 1024 || audience.chars().any(char::is_control) {
            return Err(bad(
                "audience",
                format!("{audience:?} is not an audience (1-1024 characters)"),
            ));
        }
        let max_lifetime_secs = max_lifetime_secs.unwrap_or(DEFAULT_MAX_LIFETIME_SECS);
        if !(1..=MAX_MAX_LIFETIME_SECS).contains(&max_lifetime_secs) {
            return Err(bad(
                "max-lifetime",
                format!("{max_lifetime_secs} s is outside 1..={MAX_MAX_LIFETIME_SECS} s"),
            ));
        }
        let leeway_secs = leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS);
        if !(0..=MAX_LEEWAY_SECS).contains(&leeway_secs) {
            return Err(bad(
                "leeway",
                format!("{leeway_secs} s is outside 0..={MAX_LEEWAY_SECS} s"),
            ));
        }
        Ok(IssuerConfig {
            issuer: issuer.to_owned(),
            jwks_url: jwks_url.to_owned(),
            audience: audience.to_owned(),
            tenant,
            tenant_claim: claim_name("tenant-claim", tenant_claim.unwrap_or("tenant"))?,
            scopes_claim: claim_name("scopes-claim", scopes_claim.unwrap_or("scope"))?,
            max_lifetime_secs,
            leeway_secs,
        })
    }
}

/// Whether a bearer credential has a JWT's shape (three base64url segments, a JSON header).
/// API keys start with `vk_` and have no dot, so the two never overlap.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ")
        && token.len() <= MAX_TOKEN_BYTES
        && token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What must be known before a key is looked up: the issuer (to find its configuration) and
/// the key id. The algorithm is checked here, before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    pub issuer: String,
    pub kid: String,
    pub alg: Algorithm,
}

/// Reads the header and the (not yet trusted) `iss` of a token.
pub fn inspect(token: &str) -> Result<Unverified, TokenError> {
    if !looks_like_jwt(token) {
        return Err(TokenError::Malformed);
    }
    // The header's alg is parsed by hand first: jsonwebtoken's Header refuses `none` as an
    // unknown variant, which is a refusal too, but a clear "algorithm" one is better.
    let mut parts = token.split('.');
    let header = parts.next().and_then(b64_json).ok_or(TokenError::Malformed)?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or(TokenError::Malformed)?;
    let alg = ALLOWED_ALGORITHMS
        .into_iter()
        .find(|a| format!("{a:?}") == alg)
        .ok_or(TokenError::Algorithm)?;
    let kid = match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() && k.len() <= 256 => k.clone(),
        _ => return Err(TokenError::NoKeyId),
    };
    let claims = parts.next().and_then(b64_json).ok_or(TokenError::Malformed)?;
    let issuer = match claims.get("iss") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => s.clone(),
        _ => return Err(TokenError::Claim("iss")),
    };
    Ok(Unverified { issuer, kid, alg })
}

fn b64_json(segment: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Whether a JWK can verify `alg`: RS256 needs an RSA key, ES256 a P-256 key; a key whose
/// `alg` names another algorithm or whose `use` is not `sig` is not used.
pub fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let named = match alg {
        Algorithm::ES256 => jsonwebtoken::jwk::KeyAlgorithm::ES256,
        _ => jsonwebtoken::jwk::KeyAlgorithm::RS256,
    };
    if jwk.common.key_algorithm.is_some_and(|a| a != named) {
        return false;
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return false;
    }
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        _ => false,
    }
}

/// Verifies `token` (already [`inspect`]ed) with `jwk` for `issuer` at `now` (epoch seconds).
/// On success, the principal: the issuer's tenant, `oidc:<sub>` as the actor, and the token's
/// scopes that Verdict knows (unknown ones are ignored: an IdP mints scopes for other APIs too).
pub fn verify(
    token: &str,
    seen: &Unverified,
    jwk: &Jwk,
    issuer: &IssuerConfig,
    now: i64,
) -> Result<Principal, TokenError> {
    if !key_fits(jwk, seen.alg) {
        return Err(TokenError::UnknownKey);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| TokenError::UnknownKey)?;
    let mut v = Validation::new(seen.alg);
    v.algorithms = vec![seen.alg];
    v.set_issuer(&[&issuer.issuer]);
    v.set_audience(&[&issuer.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Time is checked in check_claims against the caller's clock, with the issuer's leeway.
    v.validate_nbf = false;
    v.validate_exp = false;
    v.leeway = 0;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) | K::Provider(_) => TokenError::Signature,
            K::InvalidAudience => TokenError::Audience,
            K::InvalidIssuer => TokenError::UnknownIssuer,
            K::MissingRequiredClaim(c) if c == "aud" => TokenError::Audience,
            K::MissingRequiredClaim(c) if c == "exp" => TokenError::Claim("exp"),
            K::MissingRequiredClaim(c) if c == "sub" => TokenError::Claim("sub"),
            K::InvalidAlgorithm => TokenError::Algorithm,
            K::ImmatureSignature => TokenError::NotYetValid,
            _ => TokenError::Malformed,
        }
    })?;
    check_claims(&data.claims, issuer, now)
}

/// The recorded actor of a token: `oidc:<first 8 hex of sha256(iss)>:<sub>`, so two issuers of
/// one tenant that both mint `sub: alice` are two actors.
pub fn actor(iss: &str, sub: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(iss.as_bytes()));
    format!("oidc:{}:{sub}", &h[..8])
}

/// Unicode format characters (general category Cf) that can hide or reorder text in a log or
/// a UI: soft hyphen, zero-width and joiners, bidi marks, embeddings, overrides and isolates,
/// invisible operators, the BOM, interlinear annotations, tag characters.
fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

fn int_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        // Integral JSON numbers only; a float or a string is a malformed claim.
        Some(v) => v.as_i64().map(Some).ok_or(TokenError::Claim(name)),
    }
}

/// The time, tenant and scope checks on verified claims.
fn check_claims(claims: &Map<String, Value>, issuer: &IssuerConfig, now: i64) -> Result<Principal, TokenError> {
    let leeway = issuer.leeway_secs;
    let exp = int_claim(claims, "exp")?.ok_or(TokenError::Claim("exp"))?;
    let iat = int_claim(claims, "iat")?.ok_or(TokenError::Claim("iat"))?;
    if exp.saturating_add(leeway) <= now {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = int_claim(claims, "nbf")? {
        if nbf > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid);
        }
    }
    if iat > now.saturating_add(leeway) {
        return Err(TokenError::NotYetValid);
    }
    if exp.saturating_sub(iat) > issuer.max_lifetime_secs {
        return Err(TokenError::TooLongLived);
    }
    match claims.get(&issuer.tenant_claim) {
        Some(Value::String(t)) if t == issuer.tenant.as_str() => {}
        Some(Value::String(_)) => return Err(TokenError::OtherTenant),
        _ => return Err(TokenError::Claim("tenant")),
    }
    let sub = match claims.get("sub") {
        Some(Value::String(s))
            if !s.is_empty()
                && s.chars().count() <= MAX_SUBJECT_CHARS
                && s.chars().all(|c| !c.is_control() && !is_format_char(c) && c != '#') =>
        {
            s
        }
        _ => return Err(TokenError::Claim("sub")),
    };
    let raw: Vec<&str> = match claims.get(&issuer.scopes_claim) {
        None => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(TokenError::Claim("scope")),
    };
    let scopes: BTreeSet<Scope> = raw.into_iter().filter_map(|s| Scope::parse(s).ok()).collect();
    Ok(Principal {
        tenant: issuer.tenant.clone(),
        key_id: actor(&issuer.issuer, sub),
        scopes,
        api_key: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issuer() -> IssuerConfig {
        IssuerConfig::new(
            "https://idp.example/",
            "https://idp.example/jwks",
            "verdict",
            TenantId::parse("acme").unwrap(),
            None,
            None,
            None,
            None,
        )
        .unwrap()
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn jwks_urls_are_public_https_or_opted_in_loopback_http() {
        for ok in ["http://127.0.0.1:9/jwks", "http://localhost/k", "http://[::1]:8/k"] {
            check_jwks_url(ok, true).expect(ok);
            let e = check_jwks_url(ok, false).unwrap_err();
            assert!(e.reason.contains(ALLOW_LOOPBACK_HTTP_ENV), "{ok}: {}", e.reason);
        }
        for ok in [
            "https://idp.example/jwks",
            "https://8.8.8.8/k",
            "https://[2001:db8::1]/k",
        ] {
            check_jwks_url(ok, false).expect(ok);
        }
        // Literal internal addresses, even over https and even with the test setting.
        for internal in [
            "https://127.0.0.1/k",
            "https://localhost/k",
            "https://10.0.0.1/k",
            "https://172.16.3.4:443/k",
            "https://192.168.1.1/k",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/k",
            "https://0.0.0.0/k",
            "https://[::1]/k",
            "https://[fd00::1]/k",
            "https://[fe80::1]/k",
            "https://[::ffff:169.254.169.254]/k",
            "http://169.254.169.254/k",
            "http://10.0.0.1/k",
        ] {
            for allow in [false, true] {
                assert_eq!(
                    check_jwks_url(internal, allow).unwrap_err().field,
                    "jwks-url",
                    "{internal}"
                );
            }
        }
        for bad in [
            "http://idp.example/jwks",
            "http://127.0.0.1.evil/",
            "ftp://x/",
            "https://",
            "https://u:p@idp/",
            "idp.example",
            "",
            "https://a b/",
        ] {
            assert_eq!(check_jwks_url(bad, true).unwrap_err().field, "jwks-url", "{bad}");
        }
    }

    #[test]
    fn issuer_settings_are_bounded() {
        let t = || TenantId::parse("acme").unwrap();
        let mk = |life, leeway| IssuerConfig::new("i", "https://x/j", "a", t(), None, None, life, leeway);
        assert_eq!(mk(Some(0), None).unwrap_err().field, "max-lifetime");
        assert_eq!(mk(Some(86_401), None).unwrap_err().field, "max-lifetime");
        assert_eq!(mk(None, Some(-1)).unwrap_err().field, "leeway");
        assert_eq!(mk(None, Some(301)).unwrap_err().field, "leeway");
        let c = mk(None, None).unwrap();
        assert_eq!((c.max_lifetime_secs, c.leeway_secs), (3_600, 60));
        assert_eq!((c.tenant_claim.as_str(), c.scopes_claim.as_str()), ("tenant", "scope"));
        let e = IssuerConfig::new("i", "https://x/j", "a", t(), Some("a b"), None, None, None).unwrap_err();
        assert_eq!(e.field, "tenant-claim");
    }

    #[test]
    fn shapes_tell_a_jwt_from_an_api_key() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJ9.c2ln"));
        assert!(!looks_like_jwt("vk_0123"));
        assert!(!looks_like_jwt("eyJ.a"));
        assert!(!looks_like_jwt("eyJ.a.b.c"));
        assert!(!looks_like_jwt("eyJ+.a.b"));
        assert!(!looks_like_jwt(&format!("eyJ.{}.b", "a".repeat(MAX_TOKEN_BYTES))));
    }

    fn segment(v: Value) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn only_rs256_and_es256_pass_inspection_and_a_kid_and_iss_are_required() {
        let body = segment(json!({"iss": "https://idp.example/"}));
        for alg in ["none", "HS256", "HS512", "RS512", "PS256", "ES384", "EdDSA", "rs256"] {
            let t = format!("{}.{body}.sig", segment(json!({"alg": alg, "kid": "k"})));
            assert_eq!(inspect(&t), Err(TokenError::Algorithm), "{alg}");
        }
        let t = format!("{}.{body}.sig", segment(json!({"alg": "RS256"})));
        assert_eq!(inspect(&t), Err(TokenError::NoKeyId));
        let t = format!(
            "{}.{}.sig",
            segment(json!({"alg": "ES256", "kid": "k"})),
            segment(json!({}))
        );
        assert_eq!(inspect(&t), Err(TokenError::Claim("iss")));
        let t = format!("{}.{body}.sig", segment(json!({"alg": "ES256", "kid": "k"})));
        let u = inspect(&t).unwrap();
        assert_eq!(
            (u.issuer.as_str(), u.kid.as_str(), u.alg),
            ("https://idp.example/", "k", Algorithm::ES256)
        );
    }

    #[test]
    fn time_lifetime_tenant_and_scope_checks() {
        let c = issuer();
        let now = 1_800_000_000;
        let base = json!({"sub": "alice", "tenant": "acme", "iat": now - 10, "exp": now + 600,
                          "scope": "transactions:read openid reviews:write"});
        let p = check_claims(&claims(base.clone()), &c, now).unwrap();
        assert_eq!(p.key_id, actor("https://idp.example/", "alice"));
        assert!(p.key_id.starts_with("oidc:") && p.key_id.ends_with(":alice") && p.key_id.len() == 19);
        let mut other = issuer();
        other.issuer = "https://other.example/".into();
        let q = check_claims(&claims(base.clone()), &other, now).unwrap();
        assert_ne!(
            q.key_id, p.key_id,
            "the same sub from two issuers of one tenant is two actors"
        );
        assert_eq!(p.api_key, None);
        assert_eq!(
            p.scopes,
            BTreeSet::from([Scope::TransactionsRead, Scope::ReviewsWrite]),
            "unknown scopes (openid) are ignored"
        );
        let with = |k: &str, v: Value| {
            let mut m = claims(base.clone());
            m.insert(k.into(), v);
            check_claims(&m, &c, now)
        };
        assert_eq!(with("exp", json!(now - 61)), Err(TokenError::Expired));
        assert!(with("exp", json!(now - 59)).is_ok(), "within the leeway");
        assert_eq!(with("nbf", json!(now + 61)), Err(TokenError::NotYetValid));
        assert!(with("nbf", json!(now + 59)).is_ok());
        assert_eq!(with("iat", json!(now + 61)), Err(TokenError::NotYetValid));
        assert_eq!(with("iat", json!(now + 600 - 3_601)), Err(TokenError::TooLongLived));
        assert_eq!(with("exp", json!("soon")), Err(TokenError::Claim("exp")));
        assert_eq!(with("exp", json!(1.5e9)), Err(TokenError::Claim("exp")));
        assert_eq!(with("tenant", json!("globex")), Err(TokenError::OtherTenant));
        assert_eq!(with("tenant", json!(["acme"])), Err(TokenError::Claim("tenant")));
        assert_eq!(with("sub", json!("a#b")), Err(TokenError::Claim("sub")));
        for hidden in [
            "al\u{200B}ice",
            "\u{202E}ecila",
            "a\u{2066}b",
            "\u{FEFF}a",
            "a\u{00AD}b",
            "a\u{E0041}",
            "a\nb",
        ] {
            assert_eq!(with("sub", json!(hidden)), Err(TokenError::Claim("sub")), "{hidden:?}");
        }
        assert!(with("sub", json!("zoë@example.com")).is_ok(), "visible Unicode is fine");
        assert_eq!(with("sub", json!("x".repeat(129))), Err(TokenError::Claim("sub")));
        let arr = with("scope", json!(["models:read", 7])).unwrap();
        assert_eq!(arr.scopes, BTreeSet::from([Scope::ModelsRead]));
        let mut no_iat = claims(base.clone());
        no_iat.remove("iat");
        assert_eq!(check_claims(&no_iat, &c, now), Err(TokenError::Claim("iat")));
        let mut no_scope = claims(base);
        no_scope.remove("scope");
        assert!(check_claims(&no_scope, &c, now).unwrap().scopes.is_empty());
    }
}
