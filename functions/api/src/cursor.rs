//! The one page-cursor codec: every `next_cursor` the api answers is sealed here, and every
//! `cursor` it is sent is opened here.
//!
//! A store's page position (its own string, which names table keys) is encrypted and
//! authenticated with ChaCha20-Poly1305 under the container's cursor key, with a random nonce.
//! The associated data binds the tenant of the credential, the listing and its scope (the
//! customer, the list, the review status and sort), so a cursor replayed under another tenant,
//! another listing or another scope fails to open: a 400 naming `cursor`, never a read. The
//! stores still check that a position lies in the caller's partition; the seal makes cursors
//! opaque and unforgeable on top of that.
//!
//! Wire form: base64url (no padding) of `version (1 byte) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`.

use crate::problem::ApiError;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use verdict::domain::TenantId;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
/// The longest cursor accepted (and the contract's `maxLength`); a sealed cursor is at most
/// this long because a store's position is at most [`MAX_POSITION`] bytes.
pub const MAX_CURSOR_LEN: usize = 2048;
/// The longest store position sealed: base64 of 1 + 12 + 1,500 + 16 bytes is 2,040 characters.
const MAX_POSITION: usize = 1500;
/// The shortest secret accepted in `VERDICT_CURSOR_KEY`.
pub const MIN_SECRET_LEN: usize = 32;
const KDF_SALT: &[u8] = b"verdict/cursor-key";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorKeyError {
    #[error("must be at least {MIN_SECRET_LEN} characters of secret (it is {0})")]
    TooShort(usize),
}

/// What a cursor is bound to: the credential's tenant, the listing, and the query parameters
/// that select the rows (a cursor of customer A's history does not page customer B's).
pub struct Listing<'a> {
    pub tenant: &'a TenantId,
    pub kind: &'static str,
    pub scope: &'a [&'a str],
}

impl Listing<'_> {
    /// Length-prefixed parts, so no two listings share associated data.
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        let parts = [
            b"verdict-cursor" as &[u8],
            self.kind.as_bytes(),
            self.tenant.as_str().as_bytes(),
        ];
        for part in parts.into_iter().chain(self.scope.iter().map(|s| s.as_bytes())) {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }
}

/// The container's cursor key. Every container of a deployment derives the same key from the
/// same secret, so a cursor answered by one container opens on another.
pub struct CursorCodec {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl CursorCodec {
    /// Derives the key from `VERDICT_CURSOR_KEY`'s secret (HKDF-SHA256): any string of at least
    /// [`MIN_SECRET_LEN`] characters, such as Secrets Manager's generated strings.
    pub fn from_secret(secret: &str) -> Result<CursorCodec, CursorKeyError> {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN {
            return Err(CursorKeyError::TooShort(secret.len()));
        }
        let prk = Salt::new(HKDF_SHA256, KDF_SALT).extract(secret.as_bytes());
        let info: &[&[u8]] = &[b"chacha20-poly1305/1"];
        let okm = prk
            .expand(info, &CHACHA20_POLY1305)
            .expect("32 bytes is within HKDF-SHA256's output limit");
        Ok(CursorCodec {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            rng: SystemRandom::new(),
        })
    }

    /// A random key: for an [`crate::App`] built in-process (tests, benchmarks), whose cursors
    /// need not outlive it. `main` always uses [`CursorCodec::from_secret`].
    pub fn ephemeral() -> CursorCodec {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .expect("the system's random source works");
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        CursorCodec::from_secret(&hex).expect("64 characters")
    }

    /// Seals a store's next-page position for `at`. A position too long to seal within
    /// [`MAX_CURSOR_LEN`] (never the case for the stores' positions) or a failed random source
    /// is an internal error (a 500): answering `next_cursor: null` would silently end the
    /// listing at this page.
    pub fn seal(&self, at: &Listing<'_>, position: Option<String>) -> Result<Option<String>, ApiError> {
        let Some(position) = position else { return Ok(None) };
        if position.len() > MAX_POSITION {
            return Err(ApiError::Internal(format!(
                "a {} page position of {} bytes is too long to seal",
                at.kind,
                position.len()
            )));
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| ApiError::Internal("no randomness for a cursor nonce".into()))?;
        let mut buf = position.into_bytes();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(at.aad()), &mut buf)
            .map_err(|_| ApiError::Internal("sealing a cursor failed".into()))?;
        let mut wire = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        wire.push(VERSION);
        wire.extend_from_slice(&nonce);
        wire.extend_from_slice(&buf);
        Ok(Some(URL_SAFE_NO_PAD.encode(wire)))
    }

    /// Opens a `cursor` sent back for `at`: the store's position, or a 400 naming `cursor` for
    /// anything this key did not seal for this tenant, listing and scope.
    pub fn open(&self, at: &Listing<'_>, raw: Option<&str>) -> Result<Option<String>, ApiError> {
        let Some(raw) = raw else { return Ok(None) };
        self.open_raw(at, raw).map(Some).ok_or_else(bad_cursor)
    }

    fn open_raw(&self, at: &Listing<'_>, raw: &str) -> Option<String> {
        if raw.len() > MAX_CURSOR_LEN {
            return None;
        }
        let wire = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let (&version, rest) = wire.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(at.aad()), &mut buf).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// The same answer as a store's own refusal of a position ([`verdict::ports::StoreError::BadCursor`]).
pub fn bad_cursor() -> ApiError {
    ApiError::field("cursor", "was not issued for this query")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    #[test]
    fn a_sealed_cursor_opens_only_for_its_tenant_listing_and_scope_under_its_key() {
        let codec = CursorCodec::from_secret(&"s".repeat(40)).unwrap();
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let at = |t, kind, scope| Listing { tenant: t, kind, scope };
        let position = r#"{"pk":"T#acme#D#tx-1","sk":"D"}"#.to_owned();
        let sealed = codec
            .seal(&at(&acme, "transactions", &["c1"]), Some(position.clone()))
            .unwrap()
            .unwrap();
        assert!(
            !sealed.contains("acme")
                && !String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(&sealed).unwrap()).contains("acme")
        );
        assert_eq!(
            codec.open(&at(&acme, "transactions", &["c1"]), Some(&sealed)).unwrap(),
            Some(position.clone())
        );
        // The same secret in another container opens it; another secret does not.
        let same = CursorCodec::from_secret(&"s".repeat(40)).unwrap();
        assert!(same.open(&at(&acme, "transactions", &["c1"]), Some(&sealed)).is_ok());
        let other_key = CursorCodec::from_secret(&"t".repeat(40)).unwrap();
        let refused = |c: &CursorCodec, l: Listing<'_>, raw: &str| matches!(c.open(&l, Some(raw)), Err(ApiError::Validation(e)) if e[0].field == "cursor");
        assert!(refused(&other_key, at(&acme, "transactions", &["c1"]), &sealed));
        assert!(refused(&codec, at(&globex, "transactions", &["c1"]), &sealed));
        assert!(refused(&codec, at(&acme, "transactions", &["c2"]), &sealed));
        assert!(refused(&codec, at(&acme, "reviews", &["c1"]), &sealed));
        // Parts are length-prefixed: ("c", "1") is not ("c1").
        assert!(refused(&codec, at(&acme, "transactions", &["c", "1"]), &sealed));
        // Two seals of one position differ (random nonce).
        assert_ne!(
            codec.seal(&at(&acme, "transactions", &["c1"]), Some(position)).unwrap(),
            Some(sealed)
        );
    }

    #[test]
    fn forged_truncated_and_altered_cursors_are_400s_naming_cursor() {
        let codec = CursorCodec::ephemeral();
        let acme = tenant("acme");
        let l = Listing {
            tenant: &acme,
            kind: "rules",
            scope: &[],
        };
        let sealed = codec.seal(&l, Some("rules/1|r1".into())).unwrap().unwrap();
        let mut flipped = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let plain_old_style = URL_SAFE_NO_PAD.encode("rules/1|r1");
        for raw in [
            String::new(),
            "garbage".into(),
            "!!!".into(),
            sealed[..sealed.len() - 4].to_owned(),
            sealed[..20].to_owned(),
            URL_SAFE_NO_PAD.encode(flipped),
            plain_old_style,
            "A".repeat(MAX_CURSOR_LEN + 1),
            format!("{sealed}="),
        ] {
            assert!(
                matches!(codec.open(&l, Some(&raw)), Err(ApiError::Validation(e)) if e[0].field == "cursor"),
                "{raw:?}"
            );
        }
        assert_eq!(codec.open(&l, None).unwrap(), None);
    }

    #[test]
    fn the_longest_position_sealed_fits_the_cursor_limit_and_a_longer_one_is_an_internal_error() {
        let codec = CursorCodec::ephemeral();
        let acme = tenant("acme");
        let l = Listing {
            tenant: &acme,
            kind: "audit",
            scope: &[],
        };
        let longest = codec.seal(&l, Some("x".repeat(MAX_POSITION))).unwrap().unwrap();
        assert!(longest.len() <= MAX_CURSOR_LEN, "{}", longest.len());
        assert_eq!(codec.open(&l, Some(&longest)).unwrap().unwrap().len(), MAX_POSITION);
        // Not `Ok(None)` (a silently ended listing): a 500 problem.
        let too_long = codec.seal(&l, Some("x".repeat(MAX_POSITION + 1)));
        assert!(
            matches!(&too_long, Err(ApiError::Internal(cause)) if cause.contains("too long")),
            "{too_long:?}"
        );
        let r = too_long.unwrap_err().to_response("/v1/audit", "rid-seal");
        assert_eq!(r.status(), 500);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert_eq!(codec.seal(&l, None).unwrap(), None);
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert_eq!(
            CursorCodec::from_secret("short").err(),
            Some(CursorKeyError::TooShort(5))
        );
        assert!(CursorCodec::from_secret(&"k".repeat(MIN_SECRET_LEN)).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 512, ..Default::default() })]
        /// No string, base64url-shaped or not, panics the decoder or opens without the key.
        #[test]
        fn open_never_panics_and_never_opens_what_it_did_not_seal(
            raw in proptest::prop_oneof![".{0,64}", "[A-Za-z0-9_-]{0,2100}", "AQ[A-Za-z0-9_-]{38,200}"],
        ) {
            let codec = CursorCodec::from_secret(&"p".repeat(40)).unwrap();
            let acme = tenant("acme");
            let l = Listing { tenant: &acme, kind: "transactions", scope: &["c1"] };
            let opened = codec.open(&l, Some(&raw));
            proptest::prop_assert!(
                matches!(&opened, Err(ApiError::Validation(e)) if e[0].field == "cursor"),
                "{raw:?}: {opened:?}"
            );
        }
    }
}
