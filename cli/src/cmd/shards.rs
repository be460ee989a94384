//! `verdict shards show|set`: how many items a tenant's customer and terminal aggregates are
//! split over (docs/dynamodb.md, "Sharded aggregates"). Raise a known big merchant's terminal
//! before its traffic arrives; a lowered count stays read until `--forget-lowered`.

use super::aws::{block_on, parse_tenant, store_error, Aws};
use anyhow::Context;
use verdict::adapters::DynamoStore;
use verdict::domain::shards::{AggregateShards, ShardCount, ShardSetting, ShardTarget, MAX_SHARDS};
use verdict::domain::TerminalId;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print the tenant's shard counts and overrides
    Show(ShowArgs),
    /// Change the tenant's counts, or one terminal's (an override)
    Set(SetArgs),
}

#[derive(clap::Args)]
struct ShowArgs {
    /// The tenant (A-Z a-z 0-9 - _ . :)
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// DynamoDB table
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
}

#[derive(clap::Args)]
struct SetArgs {
    /// The tenant (A-Z a-z 0-9 - _ . :)
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// Shards of every customer's aggregate (1 to 32)
    #[arg(long, value_name = "N")]
    customers: Option<u64>,
    /// Shards of every terminal's aggregate without an override (1 to 32)
    #[arg(long, value_name = "N")]
    terminals: Option<u64>,
    /// One terminal to override, with --shards
    #[arg(long, value_name = "ID", requires = "shards")]
    terminal: Option<String>,
    /// Shards of --terminal (1 to 32)
    #[arg(long, value_name = "N", requires = "terminal")]
    shards: Option<u64>,
    /// Stop reading the shards of one lowered count: `customers`, `terminals` or `terminal:ID`.
    /// Only once no transaction dated before that lowering plus 65 days will be scored
    /// (backfills, batch files, replays)
    #[arg(long, value_name = "WHICH")]
    forget_lowered: Option<String>,
    /// DynamoDB table
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    match a.command {
        Command::Show(a) => show(a),
        Command::Set(a) => set(a),
    }
}

fn count(flag: &str, n: Option<u64>) -> anyhow::Result<Option<ShardCount>> {
    n.map(|n| ShardCount::new(n).map_err(|e| anyhow::anyhow!("{flag} {n}: {e}")))
        .transpose()
}

fn setting(s: &ShardSetting) -> String {
    if s.read_count() > s.shards {
        format!(
            "{} (reads also cover the {} used before, until --forget-lowered)",
            s.shards.get(),
            s.read_count().get()
        )
    } else {
        s.shards.get().to_string()
    }
}

fn print(tenant: &str, l: &AggregateShards) {
    println!("tenant {tenant}: aggregate shards (1 to {MAX_SHARDS})");
    println!("  customers: {}", setting(&l.customers));
    println!("  terminals: {}", setting(&l.terminals));
    for (t, s) in l.terminal_overrides() {
        println!("  terminal {t}: {}", setting(s));
    }
}

fn show(a: ShowArgs) -> anyhow::Result<()> {
    let tenant = parse_tenant(&a.tenant)?;
    block_on(async {
        let aws = Aws::from_env().await;
        aws.require_table(&a.table).await?;
        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        let layout = store
            .aggregate_shards(&tenant)
            .await
            .map_err(|e| store_error(&aws.target, e))
            .context("cannot read the tenant config")?;
        print(tenant.as_str(), &layout);
        Ok(())
    })?
}

fn set(a: SetArgs) -> anyhow::Result<()> {
    let tenant = parse_tenant(&a.tenant)?;
    let customers = count("--customers", a.customers)?;
    let terminals = count("--terminals", a.terminals)?;
    let shards = count("--shards", a.shards)?;
    let terminal = a
        .terminal
        .as_deref()
        .map(|t| TerminalId::parse(t).map_err(|e| anyhow::anyhow!("--terminal {t:?}: {}", e.reason)))
        .transpose()?;
    let forget = a
        .forget_lowered
        .as_deref()
        .map(|w| match w {
            "customers" => Ok(ShardTarget::Customers),
            "terminals" => Ok(ShardTarget::Terminals),
            w => match w.strip_prefix("terminal:").map(TerminalId::parse) {
                Some(Ok(t)) => Ok(ShardTarget::Terminal(t)),
                _ => Err(anyhow::anyhow!(
                    "--forget-lowered {w:?}: give customers, terminals or terminal:ID"
                )),
            },
        })
        .transpose()?;
    if customers.is_none() && terminals.is_none() && terminal.is_none() && forget.is_none() {
        anyhow::bail!(
            "nothing to change: give --customers, --terminals, --terminal with --shards, or --forget-lowered"
        );
    }
    block_on(async {
        let aws = Aws::from_env().await;
        aws.require_table(&a.table).await?;
        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        let layout = store
            .change_aggregate_shards(&tenant, |l| {
                if let Some(w) = &forget {
                    l.forget_lowered(w);
                }
                if let Some(n) = customers {
                    l.set_customers(n);
                }
                if let Some(n) = terminals {
                    l.set_terminals(n);
                }
                if let (Some(t), Some(n)) = (&terminal, shards) {
                    l.set_terminal(t, n)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| store_error(&aws.target, e))
            .context("cannot change the aggregate shards")?;
        eprintln!("changed; running functions pick it up with their next decision for the tenant");
        print(tenant.as_str(), &layout);
        Ok(())
    })?
}
