//! The benchmarks' ruleset and lists (`cargo bench -p verdict --bench rules`, `cargo bench -p api
//! --bench handler`): 50 rules, 3 of them `in_list` lookups on 100,000-entry lists (ip with CIDR
//! ranges, email, customer id), the rest comparisons over tx, features and the score. Not used by
//! the product; public so both benchmarks measure the same thing.

use crate::domain::rules::lists::ListIndex;
use crate::domain::rules::{
    ListEntry, ListKind, MatchMode, Rule, RuleAction, RuleMode, RuleSpec, Ruleset, RulesetStatus, MAX_LIST_ENTRIES,
};
use crate::domain::{ListName, RuleId, Timestamp};
use std::collections::HashMap;
use std::sync::Arc;

fn ts(s: &str) -> Timestamp {
    Timestamp::parse("t", s).unwrap_or_else(|_| Timestamp::now())
}

fn entry(value: String) -> ListEntry {
    ListEntry {
        value,
        expires_at: None,
        note: None,
        added_by: "bench".into(),
        added_at: ts("2026-01-01T00:00:00Z"),
    }
}

/// 100,000 ip entries: addresses and ranges of five prefix lengths, v4 and v6.
pub fn ip_entries() -> Vec<ListEntry> {
    (0..MAX_LIST_ENTRIES as u32)
        .map(|i| {
            let v = match i % 10 {
                0..=4 => format!("{}.{}.{}.{}", 11 + i % 200, (i >> 8) & 255, i & 255, (i >> 3) & 255),
                5 | 6 => format!("{}.{}.{}.0/24", 11 + i % 200, (i >> 8) & 255, i & 255),
                7 => format!("{}.{}.{}.0/22", 11 + i % 200, (i >> 8) & 255, i & 252),
                8 => format!("{}.{}.0.0/16", 11 + i % 200, i & 255),
                _ => format!("2001:db8:{:x}::/48", i & 0xffff),
            };
            entry(v)
        })
        .collect()
}

pub fn email_entries() -> Vec<ListEntry> {
    (0..MAX_LIST_ENTRIES)
        .map(|i| entry(format!("user{i}@example{}.com", i % 100)))
        .collect()
}

pub fn customer_entries() -> Vec<ListEntry> {
    (0..MAX_LIST_ENTRIES).map(|i| entry(format!("c-{}", i * 2))).collect()
}

/// The three 100,000-entry lists the ruleset's `in_list` rules name, as stored.
pub fn list_entries() -> Vec<(ListName, ListKind, Vec<ListEntry>)> {
    vec![
        (ListName::parse("bad_ips").unwrap(), ListKind::Ip, ip_entries()),
        (ListName::parse("bad_emails").unwrap(), ListKind::Email, email_entries()),
        (
            ListName::parse("bad_customers").unwrap(),
            ListKind::CustomerId,
            customer_entries(),
        ),
    ]
}

/// Those lists indexed, as scoring caches them.
pub fn lists() -> HashMap<ListName, Arc<ListIndex>> {
    let mut m = HashMap::new();
    for (name, kind, entries) in list_entries() {
        let index = ListIndex::build(kind, &entries);
        assert_eq!(index.skipped(), 0, "{name}");
        m.insert(name, Arc::new(index));
    }
    m
}

/// 47 comparisons of the kinds fraud teams write, then the 3 list lookups.
fn rule_expressions() -> Vec<String> {
    let mut e = Vec::new();
    let features = [
        "terminal_risk_1d",
        "terminal_risk_7d",
        "terminal_risk_30d",
        "customer_tx_count_1d",
        "customer_tx_count_7d",
        "amount_to_customer_mean_1d",
        "amount_to_customer_mean_7d",
        "amount_to_customer_mean_30d",
    ];
    for (i, f) in features.iter().enumerate() {
        e.push(format!("features.{f} > {}.5", 5 + i));
        e.push(format!(
            "features.{f} > 0.{} && tx.amount > {}",
            6 + i % 3,
            20_000 + i * 5_000
        ));
    }
    for i in 0..8 {
        e.push(format!("tx.amount > {}", 300_000 + i * 100_000));
        e.push(format!(
            "tx.amount_major > {}.0 && tx.hour < {}",
            1_000 + i * 250,
            2 + i % 4
        ));
    }
    e.extend(
        [
            "score > 0.7 && tx.amount > 50000",
            "risk_score >= 95 && tx.weekday >= 6",
            "score > 0.5 && features.terminal_risk_7d > 0.4",
            "has(tx.country) && tx.country in ['NG', 'GH', 'RU', 'KP', 'IR']",
            "has(tx.email) && tx.email.endsWith('@mailinator.com')",
            "tx.weekday >= 6 && tx.amount > 300000",
            "tx.currency != 'EUR' && tx.amount > 100000",
            "has(tx.metadata.channel) && tx.metadata.channel == 'app' && score > 0.6",
            "tx.hour >= 1 && tx.hour <= 4 && features.customer_tx_count_1d > 5.0",
            "tx.terminal_id.startsWith('t-99') && tx.amount > 40000",
            "has(tx.device_id) && tx.amount > 250000",
            "features.during_night > 0.5 && features.during_weekend > 0.5 && tx.amount > 90000",
            "tx.amount > 1000000 || (tx.amount > 200000 && score > 0.4)",
            "model_version == 'legacy' && score > 0.2",
            "features.customer_mean_amount_30d > 0.0 && tx.amount_major > features.customer_mean_amount_30d * 12.0",
        ]
        .map(String::from),
    );
    e.truncate(47);
    e.push("has(tx.ip) && in_list(tx.ip, 'bad_ips')".into());
    e.push("has(tx.email) && in_list(tx.email, 'bad_emails')".into());
    e.push("in_list(tx.customer_id, 'bad_customers')".into());
    e
}

/// 50 rules of the kinds fraud teams write, ALL_MATCHED (every rule runs on every decision).
pub fn ruleset() -> Ruleset {
    let at = ts("2026-01-01T00:00:00Z");
    let rules = rule_expressions()
        .into_iter()
        .enumerate()
        .map(|(i, expression)| Rule {
            spec: RuleSpec {
                id: RuleId::parse(&format!("r{i:02}")).unwrap(),
                name: format!("Rule {i}"),
                description: String::new(),
                expression,
                action: [
                    RuleAction::Block,
                    RuleAction::Review,
                    RuleAction::Tag,
                    RuleAction::Allow,
                ][i % 4],
                priority: (i % 7) as i32,
                mode: if i % 5 == 0 { RuleMode::Shadow } else { RuleMode::Active },
            },
            version: 1,
            created_by: "bench".into(),
            created_at: at,
        })
        .collect::<Vec<_>>();
    assert_eq!(rules.len(), 50);
    Ruleset {
        version: 1,
        status: RulesetStatus::Published,
        mode: MatchMode::AllMatched,
        description: String::new(),
        rules,
        created_by: "bench".into(),
        created_at: at,
        published_by: None,
        published_at: None,
    }
}
