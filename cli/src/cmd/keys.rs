//! `verdict keys create|list|rotate|revoke`: API keys in the table. A key is generated here,
//! printed once on stdout and stored only as its SHA-256 hash; everything else goes to stderr, so
//! `verdict keys create … > key-file` captures the key and nothing but the key.
//!
//! `list` reads the tenant's keys from `gsi1` (`T#<tenant>#KEYS`). Keys created before those
//! attributes were written are not in it; `rotate` and `revoke` still find them by id.

use super::aws::{bad, block_on, parse_tenant, rfc3339, store_error, Aws};
use anyhow::Context;
use verdict::adapters::dynamodb::{NewKey, Rotated};
use verdict::adapters::DynamoStore;
use verdict::domain::auth::{now_epoch, parse_ttl, ApiKey, KeyRecord, Scope};
use verdict::ports::StoreError;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a key: prints it once on stdout (store it now: only its hash is kept)
    Create(CreateArgs),
    /// List a tenant's keys: id, scopes, created, expiry, revocation (never the key or its hash)
    List(ListArgs),
    /// Rotate a key: a new key with the same tenant and scopes at once (shown once on stdout);
    /// the old one expires after the grace period (never later than it already would)
    Rotate(RotateArgs),
    /// Revoke a key by its id (vk_ + 12 hex digits, as `create` printed it)
    Revoke(RevokeArgs),
}

#[derive(clap::Args)]
struct ListArgs {
    /// The tenant whose keys to list
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// DynamoDB table
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
}

#[derive(clap::Args)]
struct RotateArgs {
    /// The tenant the key belongs to
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// The key to replace, e.g. vk_3f9a1c2b4d5e
    #[arg(long, value_name = "ID")]
    key_id: String,
    /// How long the old key keeps working: 24h, 7d, 30m, or 0m to stop it now
    #[arg(long, value_name = "TTL", default_value = "24h", allow_hyphen_values = true)]
    grace: String,
    /// The new key's lifetime: 90d, 12h, 30m, or never
    #[arg(long, value_name = "TTL", default_value = "90d", allow_hyphen_values = true)]
    expires_in: String,
    /// DynamoDB table
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The tenant the key acts for (A-Z a-z 0-9 - _ . :)
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// Comma-separated scopes: transactions:write, transactions:read, models:read, models:write,
    /// rules:read, rules:write, lists:write, labels:write, reviews:read, reviews:write
    #[arg(long, value_name = "LIST")]
    scopes: String,
    /// Lifetime: 90d, 12h, 30m, or never
    #[arg(long, value_name = "TTL", default_value = "90d", allow_hyphen_values = true)]
    expires_in: String,
    /// DynamoDB table
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
}

#[derive(clap::Args)]
struct RevokeArgs {
    /// The tenant the key belongs to
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// The key's id, e.g. vk_3f9a1c2b4d5e
    #[arg(long, value_name = "ID")]
    key_id: String,
    /// DynamoDB table
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    match a.command {
        Command::Create(a) => create(a),
        Command::List(a) => list(a),
        Command::Rotate(a) => rotate(a),
        Command::Revoke(a) => revoke(a),
    }
}

fn create(a: CreateArgs) -> anyhow::Result<()> {
    // Every argument is checked before anything is generated or sent.
    let tenant = parse_tenant(&a.tenant)?;
    let scopes = Scope::parse_list(&a.scopes).map_err(|e| bad("--scopes", e))?;
    let ttl = parse_ttl(&a.expires_in).map_err(|e| bad("--expires-in", e))?;
    expires_at(now_epoch(), ttl, &a.expires_in)?;

    block_on(async {
        let aws = Aws::from_env().await;
        aws.require_table(&a.table).await?;
        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        let key = ApiKey::generate();
        let now = now_epoch();
        let record = KeyRecord {
            key_id: key.key_id(),
            tenant,
            scopes,
            created_at: now,
            expires_at: expires_at(now, ttl, &a.expires_in)?,
            revoked_at: None,
        };
        store
            .put_key(&key.hash(), &record)
            .await
            .map_err(|e| store_error(&aws.target, e))
            .context("cannot store the key")?;

        let scopes: Vec<&str> = record.scopes.iter().map(Scope::as_str).collect();
        let expires = match record.expires_at {
            Some(t) => format!("{} ({})", rfc3339(t), a.expires_in),
            None => "never".to_owned(),
        };
        eprintln!("created API key {} in table {}", record.key_id, a.table);
        eprintln!("  tenant:  {}", record.tenant);
        eprintln!("  scopes:  {}", scopes.join(","));
        eprintln!("  expires: {expires}");
        eprintln!("The key is on stdout, shown this once: only its SHA-256 hash is stored.");
        println!("{}", key.expose());
        Ok(())
    })?
}

fn list(a: ListArgs) -> anyhow::Result<()> {
    let tenant = parse_tenant(&a.tenant)?;
    block_on(async {
        let aws = Aws::from_env().await;
        aws.require_table(&a.table).await?;
        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        let keys = store
            .list_keys(&tenant)
            .await
            .map_err(|e| store_error(&aws.target, e))
            .context("cannot list the keys")?;
        let now = now_epoch();
        println!("{}", list_header());
        for k in &keys {
            println!("{}", list_line(k, now));
        }
        eprintln!(
            "{} key(s) of tenant {tenant}. Keys created before `keys list` existed are not listed; rotate or revoke them by id.",
            keys.len()
        );
        Ok(())
    })?
}

fn list_header() -> String {
    format!(
        "{:<16} {:<8} {:<21} {:<21} {:<21} SCOPES",
        "KEY ID", "STATE", "CREATED", "EXPIRES", "REVOKED"
    )
}

/// One listed key: never the key, never its hash.
fn list_line(k: &KeyRecord, now: i64) -> String {
    let state = match k.authenticate(&verdict::domain::auth::KeyHash(String::new()), now) {
        Ok(_) => "active",
        Err(verdict::domain::auth::AuthError::Revoked) => "revoked",
        Err(_) => "expired",
    };
    let scopes: Vec<&str> = k.scopes.iter().map(Scope::as_str).collect();
    let or_dash = |t: Option<i64>, none: &str| t.map_or(none.to_owned(), rfc3339);
    format!(
        "{:<16} {:<8} {:<21} {:<21} {:<21} {}",
        k.key_id,
        state,
        rfc3339(k.created_at),
        or_dash(k.expires_at, "never"),
        or_dash(k.revoked_at, "-"),
        scopes.join(",")
    )
}

/// Grace: like `--expires-in`, and `0m`/`0h`/`0d` for "now"; never `never` (a rotation ends the old key).
fn parse_grace(raw: &str) -> anyhow::Result<i64> {
    if matches!(raw, "0m" | "0h" | "0d") {
        return Ok(0);
    }
    match parse_ttl(raw) {
        Ok(Some(secs)) => Ok(secs),
        Ok(None) => anyhow::bail!("--grace: {raw:?} must end: use 24h, 7d, 30m or 0m"),
        Err(e) => Err(bad("--grace", e)),
    }
}

fn rotate(a: RotateArgs) -> anyhow::Result<()> {
    let tenant = parse_tenant(&a.tenant)?;
    let grace = parse_grace(&a.grace)?;
    let ttl = parse_ttl(&a.expires_in).map_err(|e| bad("--expires-in", e))?;
    let now = now_epoch();
    let not_after = now
        .checked_add(grace)
        .ok_or_else(|| anyhow::anyhow!("--grace: {:?} is too long", a.grace))?;
    expires_at(now, ttl, &a.expires_in)?;
    block_on(async {
        let aws = Aws::from_env().await;
        aws.require_table(&a.table).await?;
        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        let key = ApiKey::generate();
        let hash = key.hash();
        let now = now_epoch();
        let new = NewKey {
            hash: &hash,
            key_id: key.key_id(),
            created_at: now,
            expires_at: expires_at(now, ttl, &a.expires_in)?,
        };
        let Rotated { old, new } = match store.rotate_key(&tenant, &a.key_id, new, not_after).await {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => anyhow::bail!(
                "tenant {tenant} has no active API key {:?} in table {} (revoked or expired keys are not rotated)",
                a.key_id,
                a.table
            ),
            Err(e) => return Err(store_error(&aws.target, e).context("cannot rotate the key")),
        };
        eprintln!("rotated API key {} of tenant {tenant}:", old.key_id);
        eprintln!(
            "  old {}: expires {}",
            old.key_id,
            old.expires_at.map_or("never".into(), rfc3339)
        );
        eprintln!(
            "  new {}: expires {}, scopes {}",
            new.key_id,
            new.expires_at.map_or("never".into(), rfc3339),
            new.scopes.iter().map(Scope::as_str).collect::<Vec<_>>().join(",")
        );
        eprintln!("The new key is on stdout, shown this once: only its SHA-256 hash is stored.");
        println!("{}", key.expose());
        Ok(())
    })?
}

fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    let tenant = parse_tenant(&a.tenant)?;
    block_on(async {
        let aws = Aws::from_env().await;
        aws.require_table(&a.table).await?;
        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        let now = now_epoch();
        let record = match store.revoke_key(&tenant, &a.key_id, now).await {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => {
                anyhow::bail!("tenant {tenant} has no API key {:?} in table {}", a.key_id, a.table)
            }
            Err(e) => return Err(store_error(&aws.target, e).context("cannot revoke the key")),
        };
        match record.revoked_at {
            Some(t) if t < now => eprintln!(
                "API key {} of tenant {tenant} was already revoked at {}",
                record.key_id,
                rfc3339(t)
            ),
            Some(t) => eprintln!("revoked API key {} of tenant {tenant} at {}", record.key_id, rfc3339(t)),
            None => anyhow::bail!("the store did not record the revocation of {}", record.key_id),
        }
        Ok(())
    })?
}

/// When a key made at `now` with lifetime `ttl` (seconds) expires; an error past the epoch's range.
fn expires_at(now: i64, ttl: Option<i64>, raw: &str) -> anyhow::Result<Option<i64>> {
    ttl.map(|secs| {
        now.checked_add(secs)
            .ok_or_else(|| anyhow::anyhow!("--expires-in: {raw:?} is too long"))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_expires_in_is_an_error_naming_the_flag_and_the_value() {
        for raw in ["5é", "é", "", "99999999999999999999d", "9223372036854775807d"] {
            let e = parse_ttl(raw)
                .map_err(|e| bad("--expires-in", e))
                .expect_err(raw)
                .to_string();
            assert!(
                e.starts_with("--expires-in: ") && e.contains(&format!("{raw:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_grace_is_a_duration_or_zero_never_never_and_never_a_panic() {
        assert_eq!(parse_grace("24h").unwrap(), 86_400);
        assert_eq!(parse_grace("0m").unwrap(), 0);
        for raw in ["never", "", "-1h", "1y", "99999999999999999999d", "é"] {
            let e = parse_grace(raw).expect_err(raw).to_string();
            assert!(e.starts_with("--grace: ") && e.contains(&format!("{raw:?}")), "{e}");
        }
    }

    #[test]
    fn a_listed_key_shows_its_state_and_never_a_secret() {
        let rec = KeyRecord {
            key_id: "vk_0123456789ab".into(),
            tenant: verdict::domain::TenantId::parse("acme").unwrap(),
            scopes: Scope::parse_list("transactions:read,reviews:write").unwrap(),
            created_at: 1_800_000_000,
            expires_at: Some(1_800_000_100),
            revoked_at: None,
        };
        let line = list_line(&rec, 1_800_000_050);
        assert!(line.starts_with("vk_0123456789ab  active "), "{line}");
        assert!(
            line.contains("2027-01-15T08:00:00Z") && line.ends_with("transactions:read,reviews:write"),
            "{line}"
        );
        assert!(list_line(&rec, 1_800_000_100).contains(" expired "));
        let revoked = KeyRecord {
            revoked_at: Some(1_800_000_010),
            ..rec
        };
        assert!(list_line(&revoked, 1_800_000_050).contains(" revoked "));
        assert_eq!(list_header().split_whitespace().count(), 7);
    }

    #[test]
    fn an_expiry_past_the_epoch_range_is_an_error() {
        let ttl = parse_ttl("106751991167300d").unwrap();
        let e = expires_at(1_800_000_000, ttl, "106751991167300d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--expires-in") && e.contains("106751991167300d"), "{e}");
        assert_eq!(expires_at(100, Some(60), "1m").unwrap(), Some(160));
        assert_eq!(expires_at(100, None, "never").unwrap(), None);
    }
}
