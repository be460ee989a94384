//! Rules, rulesets, the ruleset pointer, lists and the audit ([`RulesAdmin`], [`RulesRead`]);
//! the layout and the crash analysis of list changes are in docs/dynamodb.md, "Rules and lists".
//!
//! Every change writes its audit entry in the same TransactWriteItems. Pages are read
//! tolerantly (an item that does not parse is logged and skipped); a read of one named item
//! answers [`StoreError::Corrupt`] for it.

use super::*;
use crate::domain::rules::{
    AuditEntry, ListEntry, ListMeta, Rule, Ruleset, RulesetPointer, RulesetStatus, MAX_LISTS, MAX_LIST_ENTRIES,
};
use crate::domain::{ListName, RuleId};
use crate::ports::rules::{ListChange, ListContents, RulesAdmin, RulesRead};
use aws_sdk_dynamodb::types::{ConditionCheck, Delete};
use std::collections::HashSet;

/// DynamoDB's item size limit (names and values).
const ITEM_LIMIT: usize = 400 * 1024;
/// A sort key holds at most 1,024 bytes; an entry's is `E#` and the value.
const MAX_VALUE_BYTES: usize = 1_000;
/// Entries of one list change per TransactWriteItems (at most 100 actions): the other three
/// are the list's meta, the CONFIG item and the audit entry.
const LIST_CHANGE_CHUNK: usize = 97;
/// Attempts of one part of a list change that lost to a concurrent change of the same list.
const LIST_ATTEMPTS: u32 = 5;
const CURSOR_MAX: usize = 2048;

/// `S` and `N` attributes' stored size, as DynamoDB counts it (near enough for the limit:
/// a number is counted as its digits).
fn item_size(item: &Item) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value(v)).sum::<usize>(),
            AttributeValue::L(l) => 3 + l.iter().map(value).sum::<usize>(),
            _ => 8,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

fn json<T: Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Rejected(format!("{what}: cannot be stored: {e}")))
}

fn rule_item(key: &ItemKey, rule: &Rule) -> Result<Item, StoreError> {
    let mut item = key.to_item();
    item.insert("version".into(), n(rule.version));
    item.insert("rule".into(), s(json(&format!("rule {}", rule.spec.id), rule)?));
    Ok(item)
}

fn parse_rule(item: &Item, key: &ItemKey) -> Result<Rule, StoreError> {
    serde_json::from_str(get_s(item, "rule", key)?).map_err(|e| corrupt(key, format!("rule: {e}")))
}

fn ruleset_item(key: &ItemKey, r: &Ruleset) -> Result<Item, StoreError> {
    let mut item = key.to_item();
    item.insert("version".into(), n(r.version));
    item.insert("status".into(), s(status(r.status)));
    item.insert("ruleset".into(), s(json(&format!("ruleset {}", r.version), r)?));
    let size = item_size(&item);
    if size > ITEM_LIMIT {
        return Err(StoreError::Rejected(format!(
            "ruleset {} is {size} bytes stored, over DynamoDB's {ITEM_LIMIT} bytes an item: fewer or shorter rules",
            r.version
        )));
    }
    Ok(item)
}

fn status(s: RulesetStatus) -> &'static str {
    match s {
        RulesetStatus::Draft => "draft",
        RulesetStatus::Published => "published",
    }
}

fn parse_ruleset(item: &Item, key: &ItemKey) -> Result<Ruleset, StoreError> {
    serde_json::from_str(get_s(item, "ruleset", key)?).map_err(|e| corrupt(key, format!("ruleset: {e}")))
}

fn meta_item(key: &ItemKey, m: &ListMeta) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(m)
        .map_err(|e| StoreError::Rejected(format!("list {}: cannot be stored: {e}", m.name)))?;
    item.extend(key.to_item());
    Ok(item)
}

fn parse_meta(mut item: Item, key: &ItemKey) -> Result<ListMeta, StoreError> {
    // A negative or unreadable count reads as 0, logged: an odd counter must not make the list
    // unreadable for every decision and every later change (the next change rewrites it).
    let count_ok = matches!(item.get("entries"), Some(AttributeValue::N(n)) if n.parse::<u64>().is_ok());
    if !count_ok {
        tracing::warn!(key = %key, entries = ?item.get("entries"), "list meta: unreadable entry count read as 0");
        item.insert("entries".into(), AttributeValue::N("0".into()));
    }
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| corrupt(key, e.to_string()))
}

/// An entry's item. Its expiry is `expiry`, not `expires_at`: the table's TTL attribute must
/// never delete an entry behind its list's count.
fn entry_item(key: &ItemKey, e: &ListEntry) -> Item {
    let mut item = key.to_item();
    item.insert("value".into(), s(&e.value));
    if let Some(x) = &e.expires_at {
        item.insert("expiry".into(), s(x.to_rfc3339()));
    }
    if let Some(note) = &e.note {
        item.insert("note".into(), s(note));
    }
    item.insert("added_by".into(), s(&e.added_by));
    item.insert("added_at".into(), s(e.added_at.to_rfc3339()));
    item
}

fn parse_entry(item: &Item, key: &ItemKey) -> Result<ListEntry, StoreError> {
    let expires_at = match get_s_opt(item, "expiry", key)? {
        None => None,
        Some(_) => Some(get_timestamp(item, "expiry", key)?),
    };
    Ok(ListEntry {
        value: get_s(item, "value", key)?.to_owned(),
        expires_at,
        note: get_s_opt(item, "note", key)?.map(str::to_owned),
        added_by: get_s(item, "added_by", key)?.to_owned(),
        added_at: get_timestamp(item, "added_at", key)?,
    })
}

fn audit_item(key: &ItemKey, a: &AuditEntry) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(a)
        .map_err(|e| StoreError::Rejected(format!("audit entry: cannot be stored: {e}")))?;
    item.extend(key.to_item());
    Ok(item)
}

fn parse_audit(item: Item, key: &ItemKey) -> Result<AuditEntry, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| corrupt(key, e.to_string()))
}

/// The audit entry of part `i` of `parts` of one change: the caller's, with the part's counts.
fn part_audit(audit: &AuditEntry, i: usize, parts: usize, counts: String) -> AuditEntry {
    if parts <= 1 {
        return audit.clone();
    }
    let sep = if audit.detail.is_empty() { "" } else { " " };
    AuditEntry {
        detail: format!("{}{sep}(part {} of {parts}: {counts})", audit.detail, i + 1),
        ..audit.clone()
    }
}

/// A page cursor: base64url of `<kind>/1|<sort key of the last item>`, applied in the caller's
/// own partition only.
fn encode_cursor(kind: &str, sk: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}/1|{sk}"))
}

fn decode_cursor(kind: &str, raw: &str, valid: impl Fn(&str) -> bool) -> Result<String, StoreError> {
    if raw.len() > CURSOR_MAX {
        return Err(StoreError::BadCursor);
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| StoreError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
    match text.split_once('|') {
        Some((k, sk)) if k.strip_suffix("/1") == Some(kind) && valid(sk) => Ok(sk.to_owned()),
        _ => Err(StoreError::BadCursor),
    }
}

fn names_map(names: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    (!names.is_empty()).then(|| names.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
}

/// One page of a Query.
struct RawPage {
    items: Vec<(ItemKey, Item)>,
    /// The sort key of the last item, when more may follow.
    next: Option<String>,
}

impl DynamoStore {
    fn put(
        &self,
        item: Item,
        condition: Option<&str>,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = build(
            "Put",
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_owned))
                .set_expression_attribute_names(names_map(names))
                .set_expression_attribute_values(
                    (!values.is_empty()).then(|| values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
                )
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn audit_put(
        &self,
        tenant: &TenantId,
        a: &AuditEntry,
        unique: &str,
        part: usize,
    ) -> Result<TransactWriteItem, StoreError> {
        let key = Keys::new(tenant).audit_entry(&a.at, unique, part);
        Ok(TransactWriteItem::builder()
            .put(self.put_if_absent(audit_item(&key, a)?)?)
            .build())
    }

    fn update_item(
        &self,
        key: &ItemKey,
        expression: &str,
        condition: Option<&str>,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = build(
            "Update",
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(key.to_item()))
                .update_expression(expression)
                .set_condition_expression(condition.map(str::to_owned))
                .set_expression_attribute_names(names_map(names))
                .set_expression_attribute_values(
                    (!values.is_empty()).then(|| values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
                )
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn query_page(
        &self,
        pk: String,
        prefix: Option<&str>,
        forward: bool,
        limit: usize,
        after: Option<String>,
        op: &'static str,
    ) -> Result<RawPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut values = HashMap::from([(":pk".to_owned(), s(&pk))]);
        let condition = match prefix {
            Some(p) => {
                values.insert(":prefix".to_owned(), s(p));
                "pk = :pk AND begins_with(sk, :prefix)"
            }
            None => "pk = :pk",
        };
        let start = after.map(|sk| ItemKey::new(pk.clone(), sk).to_item());
        // One more than asked: if it comes back there is a next page, and no empty last page.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(forward)
            .consistent_read(true)
            .limit(limit as i32 + 1)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error(op, e))?;
        let truncated = out.last_evaluated_key.is_some();
        let mut raw = out.items.unwrap_or_default();
        let more = raw.len() > limit || truncated;
        raw.truncate(limit);
        let mut items = Vec::with_capacity(raw.len());
        for item in raw {
            match ItemKey::of(&item) {
                Some(k) => items.push((k, item)),
                None => tracing::warn!(partition = %pk, "{op}: an item without pk/sk is skipped"),
            }
        }
        let next = if more {
            items.last().map(|(k, _)| k.sk.clone())
        } else {
            None
        };
        Ok(RawPage { items, next })
    }

    /// Every item of a partition (under `prefix`), in sort key order.
    async fn query_all(
        &self,
        pk: String,
        prefix: Option<&str>,
        op: &'static str,
    ) -> Result<Vec<(ItemKey, Item)>, StoreError> {
        let mut values = HashMap::from([(":pk".to_owned(), s(&pk))]);
        let condition = match prefix {
            Some(p) => {
                values.insert(":prefix".to_owned(), s(p));
                "pk = :pk AND begins_with(sk, :prefix)"
            }
            None => "pk = :pk",
        };
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_error(op, e))?;
            match ItemKey::of(&item) {
                Some(k) => out.push((k, item)),
                None => tracing::warn!(partition = %pk, "{op}: an item without pk/sk is skipped"),
            }
        }
        Ok(out)
    }

    /// The page's items that parse; the others are logged with their key and skipped.
    fn tolerant<T>(
        items: Vec<(ItemKey, Item)>,
        what: &str,
        parse: impl Fn(Item, &ItemKey) -> Result<T, StoreError>,
    ) -> Vec<T> {
        items
            .into_iter()
            .filter_map(|(key, item)| match parse(item, &key) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "{what} unreadable: left out");
                    None
                }
            })
            .collect()
    }

    /// Which of `values` have an entry in the list (BatchGetItem, 100 keys a call).
    async fn existing_values(
        &self,
        tenant: &TenantId,
        name: &ListName,
        values: &[&str],
    ) -> Result<HashSet<String>, StoreError> {
        let keys = Keys::new(tenant);
        let wanted: Vec<ItemKey> = values.iter().map(|v| keys.list_entry(name, v)).collect();
        let mut found = HashSet::new();
        for chunk in wanted.chunks(100) {
            let refs: Vec<&ItemKey> = chunk.iter().collect();
            for key in self.batch_get(&refs).await?.into_keys() {
                if let Some(v) = key.sk.strip_prefix(LIST_ENTRY_PREFIX) {
                    found.insert(v.to_owned());
                }
            }
        }
        Ok(found)
    }

    async fn stored_meta(&self, tenant: &TenantId, name: &ListName) -> Result<ListMeta, StoreError> {
        RulesAdmin::list_meta(self, tenant, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("list {name}")))
    }

    /// Rebuilds the CONFIG item's `list_versions` from the lists' metas when it is missing or
    /// not a map (a config item written before lists, or damaged), so list changes can go on.
    async fn repair_list_versions(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let keys = Keys::new(tenant);
        let metas = Self::tolerant(
            self.query_all(keys.lists(), None, "Query (lists)").await?,
            "list",
            parse_meta,
        );
        let map: HashMap<String, AttributeValue> = metas.iter().map(|m| (m.name.to_string(), n(m.version))).collect();
        tracing::warn!(key = %keys.config(), lists = map.len(), "{LIST_VERSIONS} missing or not a map: rebuilt from the lists");
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keys.config().to_item()))
            .update_expression("SET #lv = :map")
            .condition_expression("attribute_not_exists(#lv) OR NOT attribute_type(#lv, :m)")
            .expression_attribute_names("#lv", LIST_VERSIONS)
            .expression_attribute_values(":map", AttributeValue::M(map))
            .expression_attribute_values(":m", s("M"))
            .send()
            .await;
        match out {
            // A concurrent change made it a map first.
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failed(&e) => Ok(()),
            Err(e) => Err(sdk_error("UpdateItem (repair list versions)", e)),
        }
    }

    /// The CONFIG update of a list change: the list's version in `list_versions`.
    fn list_version_update(
        &self,
        tenant: &TenantId,
        name: &ListName,
        version: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        self.update_item(
            &Keys::new(tenant).config(),
            "SET #lv.#name = :v",
            Some("attribute_type(#lv, :m)"),
            &[("#lv", LIST_VERSIONS), ("#name", name.as_str())],
            vec![(":v", n(version)), (":m", s("M"))],
        )
    }

    /// The meta update of a list change, on the condition that nothing changed it since `from`.
    fn meta_update(
        &self,
        tenant: &TenantId,
        from: &ListMeta,
        version: u64,
        entries: u64,
        at: &Timestamp,
    ) -> Result<TransactWriteItem, StoreError> {
        self.update_item(
            &Keys::new(tenant).list_meta(&from.name),
            "SET #v = :v, #e = :e, updated_at = :at",
            Some("#v = :old"),
            &[("#v", "version"), ("#e", "entries")],
            vec![
                (":v", n(version)),
                (":e", n(entries)),
                (":old", n(from.version)),
                (":at", s(at.to_rfc3339())),
            ],
        )
    }

    /// One part of a list change: its entry writes, the meta, the CONFIG version, the audit;
    /// read again and retried while a concurrent change of the list gets in the way. `write`
    /// builds the entry actions from which of the part's values exist now. Returns the meta
    /// after the part, and the part's (new, existing) counts.
    #[allow(clippy::too_many_arguments)]
    async fn list_part(
        &self,
        tenant: &TenantId,
        meta: &mut ListMeta,
        values: &[&str],
        known: Option<HashSet<String>>,
        audit: impl Fn(u64, u64) -> AuditEntry,
        (unique, part): (&str, usize),
        write: impl Fn(&HashSet<String>) -> Result<(Vec<TransactWriteItem>, u64, u64, i64), StoreError>,
    ) -> Result<(u64, u64), StoreError> {
        let mut known = known;
        for attempt in 0..LIST_ATTEMPTS {
            let existing = match known.take() {
                Some(k) => k,
                None => {
                    *meta = self.stored_meta(tenant, &meta.name).await?;
                    self.existing_values(tenant, &meta.name, values).await?
                }
            };
            let (mut items, new, old, delta) = write(&existing)?;
            let entries = meta.entries as i64 + delta;
            if entries > MAX_LIST_ENTRIES as i64 {
                return Err(StoreError::LimitReached(format!(
                    "list {} would hold {entries} entries; at most {MAX_LIST_ENTRIES}",
                    meta.name
                )));
            }
            let entries = entries.max(0) as u64;
            let version = meta.version + 1;
            let a = audit(new, old);
            let at = a.at;
            let first_shared = items.len();
            items.push(self.meta_update(tenant, meta, version, entries, &at)?);
            items.push(self.list_version_update(tenant, &meta.name, version)?);
            items.push(self.audit_put(tenant, &a, unique, part)?);
            match self.transact(items, "TransactWriteItems (list change)").await? {
                Transacted::Written => {
                    meta.version = version;
                    meta.entries = entries;
                    meta.updated_at = at;
                    return Ok((new, old));
                }
                Transacted::ConditionFailed(codes) | Transacted::Refused(codes)
                    if codes.get(first_shared + 1).is_some_and(|c| c != "None")
                        && codes
                            .iter()
                            .enumerate()
                            .all(|(i, c)| i == first_shared + 1 || c == "None") =>
                {
                    // Only the CONFIG item stood in the way: its list versions are not a map.
                    self.repair_list_versions(tenant).await?;
                    known = Some(existing);
                }
                Transacted::ConditionFailed(_) => {
                    // Another change of this list came first: read again.
                    tokio::time::sleep(jitter(attempt)).await;
                }
                Transacted::Refused(codes) => {
                    return Err(StoreError::Rejected(format!(
                        "TransactWriteItems (list change): refused: {codes:?}"
                    )))
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "list {}: it kept changing under this change; try again",
            meta.name
        )))
    }
}

impl RulesRead for DynamoStore {
    async fn ruleset(&self, tenant: &TenantId, version: u32) -> Result<Option<Ruleset>, StoreError> {
        let key = Keys::new(tenant).ruleset(version);
        self.get(&key).await?.map(|item| parse_ruleset(&item, &key)).transpose()
    }

    /// The meta first, then the entries: a change in between leaves entries newer than the
    /// meta's version, which the next version seen in CONFIG replaces; never older ones cached
    /// under a newer version.
    async fn list_contents(&self, tenant: &TenantId, name: &ListName) -> Result<Option<ListContents>, StoreError> {
        let Some(meta) = RulesAdmin::list_meta(self, tenant, name).await? else {
            return Ok(None);
        };
        let items = self
            .query_all(
                Keys::new(tenant).list_entries(name),
                Some(LIST_ENTRY_PREFIX),
                "Query (list entries)",
            )
            .await?;
        let entries = Self::tolerant(items, "list entry", |item, key| parse_entry(&item, key));
        Ok(Some(ListContents { meta, entries }))
    }
}

impl RulesAdmin for DynamoStore {
    /// One TransactWriteItems: the version (new), the latest (absent or the version before),
    /// the audit entry.
    async fn put_rule(&self, tenant: &TenantId, rule: &Rule, audit: &AuditEntry) -> Result<(), StoreError> {
        let keys = Keys::new(tenant);
        let id = &rule.spec.id;
        let version = self.put(
            rule_item(&keys.rule_version(id, rule.version), rule)?,
            Some("attribute_not_exists(pk)"),
            &[],
            vec![],
        )?;
        let latest = match rule.version.checked_sub(1) {
            Some(prev) => self.put(
                rule_item(&keys.rule_latest(id), rule)?,
                Some("attribute_not_exists(pk) OR version = :prev"),
                &[],
                vec![(":prev", n(prev))],
            )?,
            None => self.put(
                rule_item(&keys.rule_latest(id), rule)?,
                Some("attribute_not_exists(pk)"),
                &[],
                vec![],
            )?,
        };
        let unique = format!("{:016x}", rand::random::<u64>());
        let items = vec![version, latest, self.audit_put(tenant, audit, &unique, 0)?];
        match self.transact(items, "TransactWriteItems (rule)").await? {
            Transacted::Written => Ok(()),
            Transacted::ConditionFailed(_) => Err(StoreError::Conflict(format!(
                "rule {id} version {} exists or is not the next one",
                rule.version
            ))),
            Transacted::Refused(codes) => Err(StoreError::Rejected(format!("rule {id}: refused: {codes:?}"))),
        }
    }

    async fn rule(&self, tenant: &TenantId, id: &RuleId, version: Option<u32>) -> Result<Option<Rule>, StoreError> {
        let keys = Keys::new(tenant);
        let key = match version {
            Some(v) => keys.rule_version(id, v),
            None => keys.rule_latest(id),
        };
        self.get(&key).await?.map(|item| parse_rule(&item, &key)).transpose()
    }

    async fn rules(&self, tenant: &TenantId, limit: usize, cursor: Option<&str>) -> Result<Page<Rule>, StoreError> {
        let after = cursor
            .map(|c| decode_cursor("rules", c, |sk| RuleId::parse(sk).is_ok()))
            .transpose()?;
        let page = self
            .query_page(Keys::new(tenant).rules(), None, true, limit, after, "Query (rules)")
            .await?;
        Ok(Page {
            items: Self::tolerant(page.items, "rule", |item, key| parse_rule(&item, key)),
            next_cursor: page.next.map(|sk| encode_cursor("rules", &sk)),
        })
    }

    async fn put_ruleset(&self, tenant: &TenantId, ruleset: &Ruleset, audit: &AuditEntry) -> Result<(), StoreError> {
        let item = ruleset_item(&Keys::new(tenant).ruleset(ruleset.version), ruleset)?;
        let unique = format!("{:016x}", rand::random::<u64>());
        let items = vec![
            self.put(item, Some("attribute_not_exists(pk)"), &[], vec![])?,
            self.audit_put(tenant, audit, &unique, 0)?,
        ];
        match self.transact(items, "TransactWriteItems (ruleset)").await? {
            Transacted::Written => Ok(()),
            Transacted::ConditionFailed(_) => Err(StoreError::Conflict(format!(
                "ruleset version {} exists",
                ruleset.version
            ))),
            Transacted::Refused(codes) => Err(StoreError::Rejected(format!(
                "ruleset {}: refused: {codes:?}",
                ruleset.version
            ))),
        }
    }

    async fn latest_ruleset_version(&self, tenant: &TenantId) -> Result<Option<u32>, StoreError> {
        let keys = Keys::new(tenant);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :v)")
            .expression_attribute_values(":pk", s(keys.rulesets()))
            .expression_attribute_values(":v", s(VERSION_PREFIX))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(1)
            .projection_expression("sk")
            .send()
            .await
            .map_err(|e| sdk_error("Query (latest ruleset)", e))?;
        let Some(item) = out.items.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let sk = match item.get(SK) {
            Some(AttributeValue::S(sk)) => sk.clone(),
            _ => String::new(),
        };
        version_of(&sk)
            .map(Some)
            .ok_or_else(|| corrupt(&ItemKey::new(keys.rulesets(), sk.clone()), "not a ruleset version key"))
    }

    async fn rulesets(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Ruleset>, StoreError> {
        let after = cursor
            .map(|c| decode_cursor("rulesets", c, |sk| version_of(sk).is_some()))
            .transpose()?;
        let page = self
            .query_page(
                Keys::new(tenant).rulesets(),
                Some(VERSION_PREFIX),
                false,
                limit,
                after,
                "Query (rulesets)",
            )
            .await?;
        Ok(Page {
            items: Self::tolerant(page.items, "ruleset", |item, key| parse_ruleset(&item, key)),
            next_cursor: page.next.map(|sk| encode_cursor("rulesets", &sk)),
        })
    }

    /// Read, then written back published on the condition it is still a draft, with the audit.
    async fn publish_ruleset(
        &self,
        tenant: &TenantId,
        version: u32,
        audit: &AuditEntry,
    ) -> Result<Ruleset, StoreError> {
        let key = Keys::new(tenant).ruleset(version);
        let Some(item) = self.get(&key).await? else {
            return Err(StoreError::NotFound(format!("ruleset version {version}")));
        };
        let stored = parse_ruleset(&item, &key)?;
        if stored.status != RulesetStatus::Draft {
            return Err(StoreError::Conflict(format!(
                "ruleset version {version} is not a draft"
            )));
        }
        let published = Ruleset {
            status: RulesetStatus::Published,
            published_by: Some(audit.actor.clone()),
            published_at: Some(audit.at),
            ..stored
        };
        let unique = format!("{:016x}", rand::random::<u64>());
        let items = vec![
            self.put(
                ruleset_item(&key, &published)?,
                Some("#st = :draft"),
                &[("#st", "status")],
                vec![(":draft", s(status(RulesetStatus::Draft)))],
            )?,
            self.audit_put(tenant, audit, &unique, 0)?,
        ];
        match self.transact(items, "TransactWriteItems (publish ruleset)").await? {
            Transacted::Written => Ok(published),
            Transacted::ConditionFailed(_) => Err(StoreError::Conflict(format!(
                "ruleset version {version} was published meanwhile"
            ))),
            Transacted::Refused(codes) => Err(StoreError::Rejected(format!(
                "publish ruleset {version}: refused: {codes:?}"
            ))),
        }
    }

    async fn ruleset_pointer(&self, tenant: &TenantId) -> Result<Option<RulesetPointer>, StoreError> {
        let key = Keys::new(tenant).config();
        Ok(self
            .get(&key)
            .await?
            .and_then(|item| parse_ruleset_pointer(&item, &key)))
    }

    /// One TransactWriteItems: the CONFIG pointer (conditional on `expected`; an unreadable
    /// pointer counts as none), a check that the version is published, the audit entry. The
    /// cancellation reasons tell which failed: the check is NotFound, the pointer Conflict.
    async fn move_ruleset_pointer(
        &self,
        tenant: &TenantId,
        expected: Option<u32>,
        to: &RulesetPointer,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let keys = Keys::new(tenant);
        let mut values = vec![
            (":v", n(to.version)),
            (":by", s(&to.activated_by)),
            (":at", s(to.activated_at.to_rfc3339())),
        ];
        let mut expression = "SET #a = :v, #by = :by, #at = :at".to_owned();
        match to.previous_version {
            Some(p) => {
                expression.push_str(", #p = :p");
                values.push((":p", n(p)));
            }
            None => expression.push_str(" REMOVE #p"),
        }
        let condition = match expected {
            None => {
                values.push((":n", s("N")));
                "attribute_not_exists(#a) OR NOT attribute_type(#a, :n)"
            }
            Some(e) => {
                values.push((":expected", n(e)));
                "#a = :expected"
            }
        };
        let pointer = self.update_item(
            &keys.config(),
            &expression,
            Some(condition),
            &[
                ("#a", RULESET_ACTIVE),
                ("#by", RULESET_BY),
                ("#at", RULESET_AT),
                ("#p", RULESET_PREVIOUS),
            ],
            values,
        )?;
        let check = build(
            "ConditionCheck",
            ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(keys.ruleset(to.version).to_item()))
                .condition_expression("#st = :published")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":published", s(status(RulesetStatus::Published)))
                .build(),
        )?;
        let unique = format!("{:016x}", rand::random::<u64>());
        let items = vec![
            pointer,
            TransactWriteItem::builder().condition_check(check).build(),
            self.audit_put(tenant, audit, &unique, 0)?,
        ];
        match self.transact(items, "TransactWriteItems (ruleset pointer)").await? {
            Transacted::Written => Ok(()),
            Transacted::ConditionFailed(codes)
                if codes.get(1).map(String::as_str) == Some("ConditionalCheckFailed") =>
            {
                Err(StoreError::NotFound(format!(
                    "published ruleset version {}",
                    to.version
                )))
            }
            Transacted::ConditionFailed(_) => Err(StoreError::Conflict(format!(
                "the active ruleset is not {expected:?} now"
            ))),
            Transacted::Refused(codes) => Err(StoreError::Rejected(format!("ruleset pointer: refused: {codes:?}"))),
        }
    }

    /// One TransactWriteItems: the meta (new), the list's version in CONFIG (while fewer than
    /// [`MAX_LISTS`] are there), the audit entry.
    async fn create_list(&self, tenant: &TenantId, meta: &ListMeta, audit: &AuditEntry) -> Result<(), StoreError> {
        let keys = Keys::new(tenant);
        let meta = ListMeta {
            entries: 0,
            ..meta.clone()
        };
        let unique = format!("{:016x}", rand::random::<u64>());
        for _ in 0..2 {
            let items = vec![
                self.put(
                    meta_item(&keys.list_meta(&meta.name), &meta)?,
                    Some("attribute_not_exists(pk)"),
                    &[],
                    vec![],
                )?,
                self.update_item(
                    &keys.config(),
                    "SET #lv.#name = :v",
                    Some("attribute_type(#lv, :m) AND size(#lv) < :max"),
                    &[("#lv", LIST_VERSIONS), ("#name", meta.name.as_str())],
                    vec![(":v", n(meta.version)), (":m", s("M")), (":max", n(MAX_LISTS))],
                )?,
                self.audit_put(tenant, audit, &unique, 0)?,
            ];
            match self.transact(items, "TransactWriteItems (create list)").await? {
                Transacted::Written => return Ok(()),
                Transacted::ConditionFailed(codes)
                    if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") =>
                {
                    return Err(StoreError::Conflict(format!("list {} exists", meta.name)))
                }
                Transacted::ConditionFailed(_) | Transacted::Refused(_) => {
                    let config = self.get(&keys.config()).await?;
                    if matches!(
                        config.as_ref().and_then(|c| c.get(LIST_VERSIONS)),
                        Some(AttributeValue::M(_))
                    ) {
                        return Err(StoreError::LimitReached(format!(
                            "a tenant has at most {MAX_LISTS} lists"
                        )));
                    }
                    self.repair_list_versions(tenant).await?;
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "list {}: the tenant's list versions could not be repaired; try again",
            meta.name
        )))
    }

    async fn list_meta(&self, tenant: &TenantId, name: &ListName) -> Result<Option<ListMeta>, StoreError> {
        let key = Keys::new(tenant).list_meta(name);
        self.get(&key).await?.map(|item| parse_meta(item, &key)).transpose()
    }

    async fn lists(&self, tenant: &TenantId) -> Result<Vec<ListMeta>, StoreError> {
        let items = self.query_all(Keys::new(tenant).lists(), None, "Query (lists)").await?;
        Ok(Self::tolerant(items, "list", parse_meta))
    }

    /// In parts of [`LIST_CHANGE_CHUNK`] values (in value order), each one TransactWriteItems:
    /// the entries (each conditional on being absent or present as read), the meta (conditional
    /// on its version), the CONFIG version, the audit entry. The cap is checked on the whole
    /// change before anything is written.
    async fn add_list_entries(
        &self,
        tenant: &TenantId,
        name: &ListName,
        entries: &[ListEntry],
        audit: &AuditEntry,
    ) -> Result<ListChange, StoreError> {
        // Distinct by value, the last winning: one transaction cannot write an item twice.
        let mut by_value: BTreeMap<&str, &ListEntry> = BTreeMap::new();
        for e in entries {
            by_value.insert(&e.value, e);
        }
        if let Some(v) = by_value.keys().find(|v| v.len() > MAX_VALUE_BYTES || v.is_empty()) {
            return Err(StoreError::Rejected(format!(
                "list value of {} bytes: values are 1 to {MAX_VALUE_BYTES} bytes",
                v.len()
            )));
        }
        let entries: Vec<&ListEntry> = by_value.into_values().collect();
        let mut meta = self.stored_meta(tenant, name).await?;
        let mut change = ListChange {
            version: meta.version,
            entries: meta.entries,
            ..Default::default()
        };
        if entries.is_empty() {
            return Ok(change);
        }
        let values: Vec<&str> = entries.iter().map(|e| e.value.as_str()).collect();
        let existing = self.existing_values(tenant, name, &values).await?;
        let new = values.iter().filter(|v| !existing.contains(**v)).count() as u64;
        if meta.entries + new > MAX_LIST_ENTRIES as u64 {
            return Err(StoreError::LimitReached(format!(
                "list {name} would hold {} entries; at most {MAX_LIST_ENTRIES}",
                meta.entries + new
            )));
        }
        let keys = Keys::new(tenant);
        // One suffix for the change: its parts' audit entries sort together, last part first.
        let unique = format!("{:016x}", rand::random::<u64>());
        let parts = entries.len().div_ceil(LIST_CHANGE_CHUNK);
        for (i, chunk) in entries.chunks(LIST_CHANGE_CHUNK).enumerate() {
            let chunk_values: Vec<&str> = chunk.iter().map(|e| e.value.as_str()).collect();
            let known: HashSet<String> = chunk_values
                .iter()
                .filter(|v| existing.contains(**v))
                .map(|v| (*v).to_owned())
                .collect();
            let write = |existing: &HashSet<String>| -> Result<_, StoreError> {
                let mut items = Vec::with_capacity(chunk.len() + 3);
                let (mut added, mut updated) = (0u64, 0u64);
                for e in chunk {
                    let there = existing.contains(&e.value);
                    let condition = if there {
                        "attribute_exists(pk)"
                    } else {
                        "attribute_not_exists(pk)"
                    };
                    items.push(self.put(
                        entry_item(&keys.list_entry(name, &e.value), e),
                        Some(condition),
                        &[],
                        vec![],
                    )?);
                    if there {
                        updated += 1;
                    } else {
                        added += 1;
                    }
                }
                Ok((items, added, updated, added as i64))
            };
            let (added, updated) = self
                .list_part(
                    tenant,
                    &mut meta,
                    &chunk_values,
                    Some(known),
                    |a, u| part_audit(audit, i, parts, format!("{a} added, {u} updated")),
                    (&unique, i),
                    write,
                )
                .await?;
            change.added += added;
            change.updated += updated;
            change.version = meta.version;
            change.entries = meta.entries;
        }
        Ok(change)
    }

    /// As [`Self::add_list_entries`]: parts of the values there, each entry's Delete
    /// conditional on its being there.
    async fn remove_list_entries(
        &self,
        tenant: &TenantId,
        name: &ListName,
        values: &[String],
        audit: &AuditEntry,
    ) -> Result<ListChange, StoreError> {
        let mut distinct: Vec<&str> = values
            .iter()
            .map(String::as_str)
            .filter(|v| v.len() <= MAX_VALUE_BYTES && !v.is_empty())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        // A value no entry can have is absent.
        let unstorable = values
            .iter()
            .filter(|v| v.len() > MAX_VALUE_BYTES || v.is_empty())
            .collect::<HashSet<_>>()
            .len() as u64;
        let mut meta = self.stored_meta(tenant, name).await?;
        let existing = self.existing_values(tenant, name, &distinct).await?;
        let present: Vec<&str> = distinct.iter().copied().filter(|v| existing.contains(*v)).collect();
        let mut change = ListChange {
            absent: (distinct.len() - present.len()) as u64 + unstorable,
            version: meta.version,
            entries: meta.entries,
            ..Default::default()
        };
        let keys = Keys::new(tenant);
        let unique = format!("{:016x}", rand::random::<u64>());
        let parts = present.len().div_ceil(LIST_CHANGE_CHUNK);
        for (i, chunk) in present.chunks(LIST_CHANGE_CHUNK).enumerate() {
            let known: HashSet<String> = chunk.iter().map(|v| (*v).to_owned()).collect();
            let write = |existing: &HashSet<String>| -> Result<_, StoreError> {
                let mut items = Vec::with_capacity(chunk.len() + 3);
                let mut removed = 0u64;
                for v in chunk.iter().filter(|v| existing.contains(**v)) {
                    let delete = build(
                        "Delete",
                        Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(keys.list_entry(name, v).to_item()))
                            .condition_expression("attribute_exists(pk)")
                            .build(),
                    )?;
                    items.push(TransactWriteItem::builder().delete(delete).build());
                    removed += 1;
                }
                Ok((items, removed, chunk.len() as u64 - removed, -(removed as i64)))
            };
            let (removed, gone) = self
                .list_part(
                    tenant,
                    &mut meta,
                    chunk,
                    Some(known),
                    |r, _| part_audit(audit, i, parts, format!("{r} removed")),
                    (&unique, i),
                    write,
                )
                .await?;
            change.removed += removed;
            // Removed by a concurrent change meanwhile.
            change.absent += gone;
            change.version = meta.version;
            change.entries = meta.entries;
        }
        Ok(change)
    }

    async fn list_entry(
        &self,
        tenant: &TenantId,
        name: &ListName,
        value: &str,
    ) -> Result<Option<ListEntry>, StoreError> {
        if value.is_empty() || value.len() > MAX_VALUE_BYTES {
            return Ok(None);
        }
        let key = Keys::new(tenant).list_entry(name, value);
        // Tolerant like the listing: an entry stored unreadable (an odd expiry) is logged and
        // reads as absent, so an add rewrites it, never a 500.
        let found = self.get(&key).await?.map(|item| (key, item)).into_iter().collect();
        Ok(Self::tolerant(found, "list entry", |item, key| parse_entry(&item, key)).pop())
    }

    async fn list_entries(
        &self,
        tenant: &TenantId,
        name: &ListName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ListEntry>, StoreError> {
        let after = cursor
            .map(|c| {
                decode_cursor("entries", c, |sk| {
                    sk.len() > LIST_ENTRY_PREFIX.len() && sk.starts_with(LIST_ENTRY_PREFIX)
                })
            })
            .transpose()?;
        let page = self
            .query_page(
                Keys::new(tenant).list_entries(name),
                Some(LIST_ENTRY_PREFIX),
                true,
                limit,
                after,
                "Query (list entries)",
            )
            .await?;
        Ok(Page {
            items: Self::tolerant(page.items, "list entry", |item, key| parse_entry(&item, key)),
            next_cursor: page.next.map(|sk| encode_cursor("entries", &sk)),
        })
    }

    async fn audit(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let after = cursor
            .map(|c| decode_cursor("audit", c, |sk| sk.len() > 31 && sk.as_bytes()[30] == b'#'))
            .transpose()?;
        let page = self
            .query_page(Keys::new(tenant).audit(), None, false, limit, after, "Query (audit)")
            .await?;
        Ok(Page {
            items: Self::tolerant(page.items, "audit entry", parse_audit),
            next_cursor: page.next.map(|sk| encode_cursor("audit", &sk)),
        })
    }
}
