//! `verdict oidc add|list|remove`: the OIDC issuers whose bearer JWTs the api accepts beside
//! API keys. One issuer (`iss`) authenticates exactly one tenant; a token whose tenant claim
//! names another tenant is refused. The api caches an issuer's settings for a minute.

use super::aws::{bad, block_on, parse_tenant, store_error, Aws};
use anyhow::Context;
use verdict::adapters::DynamoStore;
use verdict::app::oidc::loopback_http_allowed;
use verdict::domain::auth::now_epoch;
use verdict::domain::oidc::{check_jwks_url, IssuerConfig};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Trust an issuer's tokens for one tenant
    Add(AddArgs),
    /// List a tenant's issuers
    List(TenantArgs),
    /// Stop trusting an issuer (the api forgets it within a minute)
    Remove(RemoveArgs),
}

#[derive(clap::Args)]
struct AddArgs {
    /// The tenant the issuer's tokens act for
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// The issuer, exactly as tokens carry it in `iss`
    #[arg(long, value_name = "URL")]
    issuer: String,
    /// The issuer's JWKS (https to a public host; plain http to the loopback host only with
    /// VERDICT_OIDC_ALLOW_LOOPBACK_HTTP=1, for tests)
    #[arg(long, value_name = "URL")]
    jwks_url: String,
    /// The `aud` tokens must carry
    #[arg(long, value_name = "AUD")]
    audience: String,
    /// The claim naming the tenant
    #[arg(long, value_name = "CLAIM", default_value = "tenant")]
    tenant_claim: String,
    /// The claim with the scopes (space-separated string or array; unknown scopes are ignored)
    #[arg(long, value_name = "CLAIM", default_value = "scope")]
    scopes_claim: String,
    /// Longest accepted token lifetime (exp - iat), in seconds, at most 86400
    #[arg(long, value_name = "SECS", default_value_t = 3600, allow_hyphen_values = true)]
    max_lifetime: i64,
    /// Clock skew allowed on exp, nbf and iat, in seconds, at most 300
    #[arg(long, value_name = "SECS", default_value_t = 60, allow_hyphen_values = true)]
    leeway: i64,
    /// DynamoDB table
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
}

#[derive(clap::Args)]
struct TenantArgs {
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// DynamoDB table
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
}

#[derive(clap::Args)]
struct RemoveArgs {
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// The issuer to remove, as `list` shows it
    #[arg(long, value_name = "URL")]
    issuer: String,
    /// DynamoDB table
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    match a.command {
        Command::Add(a) => add(a),
        Command::List(a) => list(a),
        Command::Remove(a) => remove(a),
    }
}

fn config_of(a: &AddArgs) -> anyhow::Result<IssuerConfig> {
    let tenant = parse_tenant(&a.tenant)?;
    // What the api will fetch, checked now: loopback http only with the test setting.
    check_jwks_url(&a.jwks_url, loopback_http_allowed()).map_err(|e| bad("--jwks-url", e))?;
    IssuerConfig::new(
        &a.issuer,
        &a.jwks_url,
        &a.audience,
        tenant,
        Some(&a.tenant_claim),
        Some(&a.scopes_claim),
        Some(a.max_lifetime),
        Some(a.leeway),
    )
    .map_err(|e| {
        let flag = format!("--{}", e.field);
        bad(&flag, e)
    })
}

fn describe(c: &IssuerConfig) -> String {
    format!(
        "{}\n  tenant: {}\n  jwks: {}\n  audience: {}\n  claims: tenant={} scopes={}\n  max lifetime: {} s, leeway: {} s",
        c.issuer,
        c.tenant,
        c.jwks_url,
        c.audience,
        c.tenant_claim,
        c.scopes_claim,
        c.max_lifetime_secs,
        c.leeway_secs
    )
}

fn add(a: AddArgs) -> anyhow::Result<()> {
    let config = config_of(&a)?;
    block_on(async {
        let aws = Aws::from_env().await;
        aws.require_table(&a.table).await?;
        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        let added = store
            .put_issuer(&config, now_epoch())
            .await
            .map_err(|e| store_error(&aws.target, e))
            .context("cannot store the issuer")?;
        if !added {
            anyhow::bail!(
                "issuer {:?} is already configured in table {} (one issuer serves one tenant; remove it first)",
                config.issuer,
                a.table
            );
        }
        eprintln!("added OIDC issuer {}", describe(&config));
        Ok(())
    })?
}

fn list(a: TenantArgs) -> anyhow::Result<()> {
    let tenant = parse_tenant(&a.tenant)?;
    block_on(async {
        let aws = Aws::from_env().await;
        aws.require_table(&a.table).await?;
        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        let issuers = store
            .list_issuers(&tenant)
            .await
            .map_err(|e| store_error(&aws.target, e))
            .context("cannot list the issuers")?;
        for c in &issuers {
            println!("{}", describe(c));
        }
        eprintln!("{} issuer(s) for tenant {tenant}", issuers.len());
        Ok(())
    })?
}

fn remove(a: RemoveArgs) -> anyhow::Result<()> {
    let tenant = parse_tenant(&a.tenant)?;
    block_on(async {
        let aws = Aws::from_env().await;
        aws.require_table(&a.table).await?;
        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        let removed = store
            .remove_issuer(&tenant, &a.issuer)
            .await
            .map_err(|e| store_error(&aws.target, e))
            .context("cannot remove the issuer")?;
        if !removed {
            anyhow::bail!("tenant {tenant} has no issuer {:?} in table {}", a.issuer, a.table);
        }
        eprintln!("removed OIDC issuer {} of tenant {tenant}", a.issuer);
        Ok(())
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(jwks: &str, life: i64) -> AddArgs {
        AddArgs {
            tenant: "acme".into(),
            issuer: "https://idp.example/".into(),
            jwks_url: jwks.into(),
            audience: "verdict".into(),
            tenant_claim: "tenant".into(),
            scopes_claim: "scope".into(),
            max_lifetime: life,
            leeway: 60,
            table: "t".into(),
        }
    }

    #[test]
    fn bad_settings_name_their_flag() {
        assert!(config_of(&args("https://idp.example/jwks", 3600)).is_ok());
        let e = config_of(&args("http://idp.example/jwks", 3600))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--jwks-url: "), "{e}");
        // Loopback http is the test harness's opt-in, named in the refusal; this process has not set it.
        assert!(!loopback_http_allowed());
        let e = config_of(&args("http://127.0.0.1:9/jwks", 3600))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--jwks-url: ") && e.contains("VERDICT_OIDC_ALLOW_LOOPBACK_HTTP=1"),
            "{e}"
        );
        let e = config_of(&args("https://169.254.169.254/jwks", 3600))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--jwks-url: "), "{e}");
        let e = config_of(&args("https://idp.example/jwks", 0)).unwrap_err().to_string();
        assert!(e.starts_with("--max-lifetime: "), "{e}");
    }
}
