//! API keys: generated once, shown once, stored only as a SHA-256 hash.

use crate::domain::{DomainError, TenantId, Timestamp};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "transactions:write")]
    TransactionsWrite,
    #[serde(rename = "transactions:read")]
    TransactionsRead,
    #[serde(rename = "models:read")]
    ModelsRead,
    #[serde(rename = "models:write")]
    ModelsWrite,
    /// Read rules, rulesets, lists and the audit trail.
    #[serde(rename = "rules:read")]
    RulesRead,
    /// Save rules and rulesets; publish, activate and roll back rulesets.
    #[serde(rename = "rules:write")]
    RulesWrite,
    /// Create lists and add or remove their entries.
    #[serde(rename = "lists:write")]
    ListsWrite,
    /// Label transactions (`POST /v1/transactions/{id}/label`).
    #[serde(rename = "labels:write")]
    LabelsWrite,
    /// Read the review queue and its items.
    #[serde(rename = "reviews:read")]
    ReviewsRead,
    /// Claim, release and resolve review items.
    #[serde(rename = "reviews:write")]
    ReviewsWrite,
}

impl Scope {
    pub const ALL: [Scope; 10] = [
        Scope::TransactionsWrite,
        Scope::TransactionsRead,
        Scope::ModelsRead,
        Scope::ModelsWrite,
        Scope::RulesRead,
        Scope::RulesWrite,
        Scope::ListsWrite,
        Scope::LabelsWrite,
        Scope::ReviewsRead,
        Scope::ReviewsWrite,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::TransactionsWrite => "transactions:write",
            Scope::TransactionsRead => "transactions:read",
            Scope::ModelsRead => "models:read",
            Scope::ModelsWrite => "models:write",
            Scope::RulesRead => "rules:read",
            Scope::RulesWrite => "rules:write",
            Scope::ListsWrite => "lists:write",
            Scope::LabelsWrite => "labels:write",
            Scope::ReviewsRead => "reviews:read",
            Scope::ReviewsWrite => "reviews:write",
        }
    }

    pub fn parse(raw: &str) -> Result<Scope, DomainError> {
        Scope::ALL.into_iter().find(|s| s.as_str() == raw).ok_or_else(|| {
            let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            DomainError::new(
                "scopes",
                format!("{raw:?} is not a scope; known scopes are {}", known.join(", ")),
            )
        })
    }

    /// Parses a comma-separated list.
    pub fn parse_list(raw: &str) -> Result<BTreeSet<Scope>, DomainError> {
        let set = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Scope::parse)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if set.is_empty() {
            return Err(DomainError::new("scopes", "at least one scope is required"));
        }
        Ok(set)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const KEY_PREFIX: &str = "vk_";

/// A plaintext API key. Exists only at creation and in a request header; never stored or logged.
pub struct ApiKey(String);

impl ApiKey {
    /// 32 random bytes from the OS, hex-encoded behind a recognisable prefix.
    pub fn generate() -> ApiKey {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        ApiKey(format!("{KEY_PREFIX}{}", hex::encode(bytes)))
    }

    /// Reads the key from an `Authorization: Bearer …` header value.
    pub fn from_bearer(header: &str) -> Option<ApiKey> {
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))?
            .trim();
        (token.starts_with(KEY_PREFIX) && token.len() <= 200 && token.is_ascii()).then(|| ApiKey(token.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The only form that is stored.
    pub fn hash(&self) -> KeyHash {
        KeyHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// A short, non-secret id for listing and revoking: the hash's first 12 hex digits.
    pub fn key_id(&self) -> String {
        format!("{KEY_PREFIX}{}", &self.hash().0[..12])
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyHash(pub String);

/// A stored key: whose it is, what it may do, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub tenant: TenantId,
    pub scopes: BTreeSet<Scope>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Why a request is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credential: send an API key or an OIDC token as Authorization: Bearer <credential>")]
    Missing,
    #[error("invalid credential")]
    Invalid,
    #[error("the API key has expired")]
    Expired,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("the credential lacks the {0} scope")]
    MissingScope(Scope),
    /// A bearer JWT that does not verify (see `domain::oidc`).
    #[error("invalid token: {0}")]
    Token(crate::domain::oidc::TokenError),
}

/// The caller, once authenticated: the tenant comes from here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    /// The actor recorded on labels, reviews and audit entries: the API key's id (`vk_…`), or
    /// `oidc:<sub>` for a token.
    pub key_id: String,
    pub scopes: BTreeSet<Scope>,
    /// The API key's hash: a decision re-reads its item so a revocation stops it at once.
    /// `None` for an OIDC token, which has no item (it is short-lived instead).
    pub api_key: Option<KeyHash>,
}

impl Principal {
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(AuthError::MissingScope(scope))
        }
    }
}

impl KeyRecord {
    /// Checks the record looked up under `hash` at `now` (epoch seconds).
    pub fn authenticate(&self, hash: &KeyHash, now: i64) -> Result<Principal, AuthError> {
        if self.revoked_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Revoked);
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Expired);
        }
        Ok(Principal {
            tenant: self.tenant.clone(),
            key_id: self.key_id.clone(),
            scopes: self.scopes.clone(),
            api_key: Some(hash.clone()),
        })
    }
}

/// Parses `90d`, `12h`, `30m` or `never` into seconds. Every error names the value as given.
pub fn parse_ttl(raw: &str) -> Result<Option<i64>, DomainError> {
    let bad = |why: &str| DomainError::new("expires-in", format!("{raw:?} {why}; use 90d, 12h, 30m or never"));
    if raw == "never" {
        return Ok(None);
    }
    // The unit is the last character, whatever its width (a byte split panics inside one).
    let mut chars = raw.chars();
    let unit = chars.next_back().ok_or_else(|| bad("is empty"))?;
    let num = chars.as_str();
    let secs: i64 = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        _ => return Err(bad("does not end in a unit d, h or m")),
    };
    // Digits only: `str::parse` would also take a sign (`+5d`, `-5d`).
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("is not a whole number and a unit"));
    }
    let n: i64 = num.parse().map_err(|_| bad("is too long"))?;
    if n <= 0 {
        return Err(bad("must be positive"));
    }
    n.checked_mul(secs).map(Some).ok_or_else(|| bad("is too long"))
}

pub fn now_epoch() -> i64 {
    Timestamp::now().unix()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_and_parse_from_bearer() {
        let k = ApiKey::generate();
        assert!(k.expose().starts_with("vk_") && k.expose().len() == 67);
        let again = ApiKey::from_bearer(&format!("Bearer {}", k.expose())).unwrap();
        assert_eq!(k.hash(), again.hash());
        assert_ne!(k.hash(), ApiKey::generate().hash());
        assert_eq!(k.hash().0.len(), 64);
        assert!(!k.hash().0.contains(&k.expose()[3..]));
        assert!(ApiKey::from_bearer("Basic abc").is_none());
        assert!(ApiKey::from_bearer("Bearer sk_live_x").is_none());
        assert_eq!(format!("{k:?}"), "ApiKey(<redacted>)");
    }

    #[test]
    fn refuses_expired_revoked_and_missing_scope() {
        let h = KeyHash("0".repeat(64));
        let rec = KeyRecord {
            key_id: "vk_x".into(),
            tenant: TenantId::parse("acme").unwrap(),
            scopes: Scope::parse_list("transactions:read").unwrap(),
            created_at: 0,
            expires_at: Some(100),
            revoked_at: None,
        };
        let p = rec.authenticate(&h, 99).unwrap();
        assert_eq!(p.tenant.as_str(), "acme");
        assert!(p.require(Scope::TransactionsRead).is_ok());
        assert_eq!(
            p.require(Scope::TransactionsWrite),
            Err(AuthError::MissingScope(Scope::TransactionsWrite))
        );
        assert_eq!(rec.authenticate(&h, 100), Err(AuthError::Expired));
        let revoked = KeyRecord {
            revoked_at: Some(50),
            ..rec
        };
        assert_eq!(revoked.authenticate(&h, 60), Err(AuthError::Revoked));
    }

    #[test]
    fn parses_scopes_and_ttls() {
        assert_eq!(Scope::parse_list("transactions:write, models:read").unwrap().len(), 2);
        assert!(Scope::parse_list("admin").unwrap_err().reason.contains("known scopes"));
        assert_eq!(parse_ttl("90d").unwrap(), Some(90 * 86_400));
        assert_eq!(parse_ttl("never").unwrap(), None);
        assert!(parse_ttl("5y").is_err());
        assert!(parse_ttl("").is_err());
    }

    #[test]
    fn odd_ttls_are_errors_naming_the_value_never_panics() {
        for raw in [
            "5é",
            "é",
            "",
            "99999999999999999999d",
            "9223372036854775807d",
            "0d",
            "-5d",
            "+5d",
            " 5d",
            "d",
        ] {
            let e = parse_ttl(raw).expect_err(raw);
            assert_eq!(e.field, "expires-in");
            assert!(e.reason.contains(&format!("{raw:?}")), "{raw}: {}", e.reason);
        }
        // The largest count of each unit that fits, and the first that does not.
        assert_eq!(
            parse_ttl("106751991167300d").unwrap(),
            Some(106_751_991_167_300 * 86_400)
        );
        assert!(parse_ttl("106751991167301d").is_err());
    }

    /// Every string of up to four characters over an alphabet of digits, units, signs, spaces
    /// and multi-byte characters, and every count of each unit around the overflow: a value or
    /// an error naming the field, never a panic, and a value only for `<positive digits><unit>`.
    #[test]
    fn parse_ttl_never_panics_exhaustively() {
        let alphabet = [
            '0', '1', '9', 'd', 'h', 'm', 'y', '-', '+', ' ', '.', 'é', '٣', '\u{0}', 'n',
        ];
        let mut inputs = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            frontier = frontier
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            inputs.extend(frontier.iter().cloned());
        }
        for unit in ["d", "h", "m"] {
            for digits in 1..=25 {
                inputs.push(format!("{}{unit}", "9".repeat(digits)));
            }
        }
        inputs.extend(["never".into(), "Never".into(), "neverd".into()]);
        for raw in &inputs {
            match parse_ttl(raw) {
                Ok(None) => assert_eq!(raw, "never"),
                Ok(Some(secs)) => {
                    assert!(secs > 0, "{raw}");
                    let (num, unit) = raw.split_at(raw.len() - 1);
                    assert!(
                        matches!(unit, "d" | "h" | "m") && num.bytes().all(|b| b.is_ascii_digit()),
                        "{raw}"
                    );
                }
                Err(e) => assert_eq!(e.field, "expires-in", "{raw}"),
            }
        }
        assert!(inputs.len() > 50_000);
    }
}
