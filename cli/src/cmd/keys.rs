//! `verdict keys create|revoke`: API keys in the table. A key is generated here, printed once on
//! stdout and stored only as its SHA-256 hash; everything else goes to stderr, so
//! `verdict keys create … > key-file` captures the key and nothing but the key.
//!
//! There is no `keys list`: the store keeps one key-id item per key in its own partition
//! (`T#<tenant>#KEYID#<key_id>`), so listing a tenant's keys would take a table Scan.

use super::aws::{bad, block_on, parse_tenant, rfc3339, store_error, Aws};
use anyhow::Context;
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
    /// Revoke a key by its id (vk_ + 12 hex digits, as `create` printed it)
    Revoke(RevokeArgs),
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
