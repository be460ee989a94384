//! List entries: how a raw value is parsed and normalised per [`ListKind`], and [`ListIndex`], the
//! in-memory form a decision looks values up in.
//!
//! Normal forms (what is stored, and what a transaction's value is turned into before a lookup):
//! - `email`: trimmed and lower-cased (Unicode lower case), one `@` with a non-empty local part and a
//!   domain of at least one character, no whitespace, at most 256 bytes.
//! - `ip`: an IPv4 or IPv6 address, or a CIDR range `address/prefix`, in Rust's canonical text (IPv6
//!   compressed, lower case). A range whose host bits are not zero is **refused** (`10.0.0.1/24`):
//!   silently widening it would block more than the analyst typed. `/32` (v4) and `/128` (v6) are
//!   the address itself and are stored without the suffix. An IPv4-mapped IPv6 address
//!   (`::ffff:1.2.3.4`) is its IPv4 address, in entries and in lookups alike.
//! - `country`: two ASCII letters, upper-cased (ISO 3166 alpha-2; not checked against the ISO table).
//! - `bin`: 6 to 8 ASCII digits.
//! - `customer_id`, `terminal_id`: trimmed, then as [`CustomerId::parse`] / [`TerminalId::parse`].
//! - `string`: 1 to 256 bytes, compared exactly (not trimmed).
//!
//! An entry with `expires_at` matches only transactions that occur strictly before it. The same value
//! listed twice keeps the later expiry (no expiry is the latest).

use super::{ListEntry, ListKind};
use crate::domain::{CustomerId, ListName, TerminalId, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Bytes of an email or string entry (the request's free-text fields are at most 256 bytes too).
pub const MAX_ENTRY_BYTES: usize = 256;

/// Parses and normalises one raw entry value of a list of `kind` (see the module doc). The error
/// names the value and what is wrong.
pub fn normalise(kind: ListKind, raw: &str) -> Result<String, String> {
    match kind {
        ListKind::Email => normalise_email(raw),
        ListKind::Ip => parse_ip_entry(raw).map(|e| e.to_string()),
        ListKind::Country => {
            let t = raw.trim();
            if t.len() == 2 && t.bytes().all(|b| b.is_ascii_alphabetic()) {
                Ok(t.to_ascii_uppercase())
            } else {
                Err(format!(
                    "{} is not an ISO 3166 alpha-2 country code (two letters)",
                    show(raw)
                ))
            }
        }
        ListKind::Bin => {
            let t = raw.trim();
            if (6..=8).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()) {
                Ok(t.to_owned())
            } else {
                Err(format!("{} is not a BIN (6 to 8 digits)", show(raw)))
            }
        }
        ListKind::CustomerId => CustomerId::parse(raw.trim())
            .map(String::from)
            .map_err(|e| format!("{} is not a customer id: {}", show(raw), e.reason)),
        ListKind::TerminalId => TerminalId::parse(raw.trim())
            .map(String::from)
            .map_err(|e| format!("{} is not a terminal id: {}", show(raw), e.reason)),
        ListKind::String => {
            if raw.is_empty() {
                Err("an empty string is not a list entry".to_owned())
            } else if raw.len() > MAX_ENTRY_BYTES {
                Err(format!("{} is longer than {MAX_ENTRY_BYTES} bytes", show(raw)))
            } else {
                Ok(raw.to_owned())
            }
        }
    }
}

/// The value quoted, shortened so that a message stays readable whatever was sent.
fn show(raw: &str) -> String {
    const SHOWN: usize = 64;
    if raw.len() <= SHOWN {
        format!("{raw:?}")
    } else {
        let mut end = SHOWN;
        while !raw.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}…", &raw[..end])
    }
}

fn normalise_email(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let bad = |why: &str| Err(format!("{} is not an email address ({why})", show(raw)));
    if t.len() > MAX_ENTRY_BYTES {
        return bad("longer than 256 bytes");
    }
    if t.chars().any(char::is_whitespace) {
        return bad("it contains whitespace");
    }
    match t.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => {
            Ok(lower(t).into_owned())
        }
        _ => bad("need local@domain"),
    }
}

/// Lower case, borrowing when there is nothing to change (the usual transaction email).
fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_uppercase) {
        std::borrow::Cow::Owned(s.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// An `ip` entry: an address is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpEntry {
    V4(u32, u8),
    V6(u128, u8),
}

impl std::fmt::Display for IpEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            IpEntry::V4(a, 32) => write!(f, "{}", Ipv4Addr::from(a)),
            IpEntry::V4(a, p) => write!(f, "{}/{p}", Ipv4Addr::from(a)),
            IpEntry::V6(a, 128) => write!(f, "{}", Ipv6Addr::from(a)),
            IpEntry::V6(a, p) => write!(f, "{}/{p}", Ipv6Addr::from(a)),
        }
    }
}

fn mask4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

fn mask6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix as u32)
    }
}

/// An address as a lookup sees it: IPv4-mapped IPv6 is IPv4.
fn parse_addr(raw: &str) -> Option<IpAddr> {
    raw.trim().parse::<IpAddr>().ok().map(|a| a.to_canonical())
}

fn parse_ip_entry(raw: &str) -> Result<IpEntry, String> {
    let t = raw.trim();
    let not_ip = || format!("{} is not an IP address or CIDR range", show(raw));
    let (addr, prefix) = match t.split_once('/') {
        None => (t, None),
        Some((a, p)) => {
            // Digits only: "+8" or " 8" would parse as u8 but is not CIDR.
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(not_ip());
            }
            (a, Some(p.parse::<u8>().map_err(|_| not_ip())?))
        }
    };
    let addr: IpAddr = addr.parse().map_err(|_| not_ip())?;
    match (addr, prefix) {
        (IpAddr::V4(a), p) => {
            let p = p.unwrap_or(32);
            if p > 32 {
                return Err(format!("{}: an IPv4 prefix is at most /32", show(raw)));
            }
            let a = u32::from(a);
            if a & !mask4(p) != 0 {
                return Err(format!(
                    "{} has host bits set; the network is {}",
                    show(raw),
                    IpEntry::V4(a & mask4(p), p)
                ));
            }
            Ok(IpEntry::V4(a, p))
        }
        (IpAddr::V6(a), None) => Ok(match IpAddr::V6(a).to_canonical() {
            IpAddr::V4(v4) => IpEntry::V4(u32::from(v4), 32),
            IpAddr::V6(v6) => IpEntry::V6(u128::from(v6), 128),
        }),
        (IpAddr::V6(a), Some(p)) => {
            if p > 128 {
                return Err(format!("{}: an IPv6 prefix is at most /128", show(raw)));
            }
            let a = u128::from(a);
            if a & !mask6(p) != 0 {
                return Err(format!(
                    "{} has host bits set; the network is {}",
                    show(raw),
                    IpEntry::V6(a & mask6(p), p)
                ));
            }
            // Lookups read an IPv4-mapped address as its IPv4 address, so a mapped range is stored
            // as the IPv4 range it covers; one wider than the mapped block could never match.
            const MAPPED: u128 = 0xffff_0000_0000;
            if a >> 32 == MAPPED >> 32 {
                if p < 96 {
                    return Err(format!(
                        "{}: an IPv4-mapped range needs a prefix of at least /96 (write the IPv4 range instead)",
                        show(raw)
                    ));
                }
                return Ok(IpEntry::V4(a as u32, p - 96));
            }
            Ok(IpEntry::V6(a, p))
        }
    }
}

/// When an entry stops matching; `None` never.
type Expiry = Option<Timestamp>;

fn later(a: Expiry, b: Expiry) -> Expiry {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

fn live(expiry: &Expiry, at: Timestamp) -> bool {
    expiry.is_none_or(|e| at < e)
}

/// Networks of one prefix length, by their masked address.
#[derive(Debug, Clone, Default)]
struct Prefixes<A> {
    /// Longest prefix first; only the lengths in use.
    by_len: Vec<(u8, HashMap<A, Expiry>)>,
}

impl<A: std::hash::Hash + Eq + Copy> Prefixes<A> {
    fn insert(&mut self, len: u8, network: A, expiry: Expiry) {
        let i = match self.by_len.iter().position(|(l, _)| *l <= len) {
            Some(i) if self.by_len[i].0 == len => i,
            Some(i) => {
                self.by_len.insert(i, (len, HashMap::new()));
                i
            }
            None => {
                self.by_len.push((len, HashMap::new()));
                self.by_len.len() - 1
            }
        };
        let map = &mut self.by_len[i].1;
        let merged = map.get(&network).map_or(expiry, |old| later(*old, expiry));
        map.insert(network, merged);
    }

    fn len(&self) -> usize {
        self.by_len.iter().map(|(_, m)| m.len()).sum()
    }
}

#[derive(Debug, Clone)]
enum Entries {
    Exact(HashMap<String, Expiry>),
    Ip { v4: Prefixes<u32>, v6: Prefixes<u128> },
}

/// A list's entries indexed for membership: a hash set for the exact kinds; for `ip`, one hash
/// set of masked networks per prefix length in use (v4 and v6 apart, an address being a /32 or
/// /128), so a lookup costs one probe per distinct prefix length.
#[derive(Debug, Clone)]
pub struct ListIndex {
    kind: ListKind,
    entries: Entries,
    /// Entries that did not parse as `kind` (stored data is normalised on write, so this is 0
    /// unless a list's kind and its entries disagree); they never match.
    skipped: usize,
}

impl ListIndex {
    /// Indexes `entries`, normalising each value again (stored values already are, so this only
    /// matters for odd stored data); an entry that does not parse is skipped and counted.
    pub fn build(kind: ListKind, entries: &[ListEntry]) -> ListIndex {
        let mut skipped = 0;
        let entries = match kind {
            ListKind::Ip => {
                let (mut v4, mut v6) = (Prefixes::default(), Prefixes::default());
                for e in entries {
                    match parse_ip_entry(&e.value) {
                        Ok(IpEntry::V4(a, p)) => v4.insert(p, a, e.expires_at),
                        Ok(IpEntry::V6(a, p)) => v6.insert(p, a, e.expires_at),
                        Err(_) => skipped += 1,
                    }
                }
                Entries::Ip { v4, v6 }
            }
            _ => {
                let mut map: HashMap<String, Expiry> = HashMap::with_capacity(entries.len());
                for e in entries {
                    match normalise(kind, &e.value) {
                        Ok(v) => {
                            let merged = map.get(&v).map_or(e.expires_at, |old| later(*old, e.expires_at));
                            map.insert(v, merged);
                        }
                        Err(_) => skipped += 1,
                    }
                }
                Entries::Exact(map)
            }
        };
        ListIndex { kind, entries, skipped }
    }

    pub fn kind(&self) -> ListKind {
        self.kind
    }

    /// Distinct values (or networks) indexed.
    pub fn len(&self) -> usize {
        match &self.entries {
            Entries::Exact(m) => m.len(),
            Entries::Ip { v4, v6 } => v4.len() + v6.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stored entries that did not parse as this list's kind.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Whether `value`, as the transaction has it, is listed for a transaction at `at`. The value
    /// is normalised as entries are (email case, IP text); one that cannot be of this kind (not an
    /// IP address, say) is in no list.
    pub fn contains(&self, value: &str, at: Timestamp) -> bool {
        match &self.entries {
            Entries::Ip { v4, v6 } => match parse_addr(value) {
                Some(IpAddr::V4(a)) => {
                    let a = u32::from(a);
                    v4.by_len
                        .iter()
                        .any(|(len, m)| m.get(&(a & mask4(*len))).is_some_and(|e| live(e, at)))
                }
                Some(IpAddr::V6(a)) => {
                    let a = u128::from(a);
                    v6.by_len
                        .iter()
                        .any(|(len, m)| m.get(&(a & mask6(*len))).is_some_and(|e| live(e, at)))
                }
                None => false,
            },
            Entries::Exact(m) => {
                let probe = |v: &str| m.get(v).is_some_and(|e| live(e, at));
                match self.kind {
                    ListKind::Email => probe(&lower(value.trim())),
                    ListKind::Country => {
                        let t = value.trim();
                        if t.bytes().any(|b| b.is_ascii_lowercase()) {
                            probe(&t.to_ascii_uppercase())
                        } else {
                            probe(t)
                        }
                    }
                    ListKind::Bin | ListKind::CustomerId | ListKind::TerminalId => probe(value.trim()),
                    ListKind::String | ListKind::Ip => probe(value),
                }
            }
        }
    }
}

/// The lists a decision can look up, by name (scoring builds it from its cache).
pub trait ListLookup: Send + Sync {
    fn list(&self, name: &ListName) -> Option<&ListIndex>;
}

impl ListLookup for HashMap<ListName, Arc<ListIndex>> {
    fn list(&self, name: &ListName) -> Option<&ListIndex> {
        self.get(name).map(|l| l.as_ref())
    }
}

impl ListLookup for BTreeMap<ListName, Arc<ListIndex>> {
    fn list(&self, name: &ListName) -> Option<&ListIndex> {
        self.get(name).map(|l| l.as_ref())
    }
}

/// No lists: every lookup is of an unloaded list.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLists;

impl ListLookup for NoLists {
    fn list(&self, _name: &ListName) -> Option<&ListIndex> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse("t", s).unwrap()
    }

    fn entry(value: &str, expires_at: Option<&str>) -> ListEntry {
        ListEntry {
            value: value.to_owned(),
            expires_at: expires_at.map(ts),
            note: None,
            added_by: "k".into(),
            added_at: ts("2026-01-01T00:00:00Z"),
        }
    }

    fn index(kind: ListKind, values: &[&str]) -> ListIndex {
        ListIndex::build(kind, &values.iter().map(|v| entry(v, None)).collect::<Vec<_>>())
    }

    const AT: &str = "2026-06-01T00:00:00Z";

    #[test]
    fn ipv4_mapped_ranges_are_stored_as_the_ipv4_ranges_they_cover() {
        let at = Timestamp::parse("t", "2026-01-01T00:00:00Z").unwrap();
        for (entry, inside, outside) in [
            ("::ffff:10.0.0.0/104", "10.1.2.3", "11.0.0.1"),
            ("::ffff:1.2.3.0/120", "::ffff:1.2.3.9", "1.2.4.1"),
            ("::ffff:0:0/96", "192.0.2.1", "2001:db8::1"),
        ] {
            let e = ListEntry {
                value: normalise(ListKind::Ip, entry).unwrap(),
                expires_at: None,
                note: None,
                added_by: "k".into(),
                added_at: at,
            };
            let index = ListIndex::build(ListKind::Ip, &[e]);
            assert!(index.contains(inside, at), "{entry} holds {inside}");
            assert!(!index.contains(outside, at), "{entry} does not hold {outside}");
        }
        assert!(
            normalise(ListKind::Ip, "::ffff:0:0/95").is_err(),
            "wider than the mapped block"
        );
    }

    #[test]
    fn entries_normalise_per_kind() {
        assert_eq!(
            normalise(ListKind::Email, "  Bob@Example.COM ").unwrap(),
            "bob@example.com"
        );
        assert_eq!(normalise(ListKind::Country, "fr").unwrap(), "FR");
        assert_eq!(normalise(ListKind::Bin, "412345").unwrap(), "412345");
        assert_eq!(normalise(ListKind::Ip, "10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert_eq!(normalise(ListKind::Ip, "10.1.2.3/32").unwrap(), "10.1.2.3");
        assert_eq!(normalise(ListKind::Ip, "2001:DB8:0:0::/32").unwrap(), "2001:db8::/32");
        assert_eq!(normalise(ListKind::Ip, "::ffff:1.2.3.4").unwrap(), "1.2.3.4");
        assert_eq!(normalise(ListKind::CustomerId, " c-1 ").unwrap(), "c-1");
        assert_eq!(normalise(ListKind::String, " a ").unwrap(), " a ");
    }

    #[test]
    fn wrong_type_entries_are_refused_naming_the_value() {
        let e = normalise(ListKind::Ip, "10.0.0.300").unwrap_err();
        assert_eq!(e, r#""10.0.0.300" is not an IP address or CIDR range"#);
        let e = normalise(ListKind::Ip, "10.0.0.1/24").unwrap_err();
        assert!(e.contains("host bits") && e.contains("10.0.0.0/24"), "{e}");
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "::/129", "x", ""] {
            assert!(normalise(ListKind::Ip, bad).is_err(), "{bad}");
        }
        assert!(normalise(ListKind::Email, "no-at-sign")
            .unwrap_err()
            .contains("\"no-at-sign\""));
        assert!(normalise(ListKind::Email, "a@").is_err());
        assert!(normalise(ListKind::Email, "a b@c").is_err());
        assert!(normalise(ListKind::Country, "FRA").is_err());
        assert!(normalise(ListKind::Bin, "12345").is_err());
        assert!(normalise(ListKind::Bin, "123456789").is_err());
        assert!(normalise(ListKind::Bin, "12345a").is_err());
        assert!(normalise(ListKind::CustomerId, "a#b")
            .unwrap_err()
            .contains("customer id"));
        assert!(normalise(ListKind::String, "").is_err());
        let long = normalise(ListKind::String, &"é".repeat(200)).unwrap_err();
        assert!(long.contains("…") && long.contains("256"), "{long}");
    }

    #[test]
    fn cidr_ranges_match_the_addresses_they_hold_v4_and_v6() {
        let l = index(ListKind::Ip, &["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"]);
        let at = ts(AT);
        assert!(l.contains("10.200.3.4", at));
        assert!(!l.contains("11.0.0.1", at));
        assert!(l.contains("192.168.1.7", at));
        assert!(!l.contains("192.168.1.8", at));
        assert!(l.contains("2001:db8:ffff::1", at));
        assert!(l.contains("2001:DB8::", at));
        assert!(!l.contains("2001:db9::1", at));
        assert!(l.contains("::1", at));
        assert!(
            l.contains("::ffff:10.9.9.9", at),
            "an IPv4-mapped address is its IPv4 address"
        );
        assert!(!l.contains("not an ip", at));
        assert_eq!(l.len(), 4);
        let all = index(ListKind::Ip, &["0.0.0.0/0"]);
        assert!(all.contains("255.255.255.255", at));
        assert!(!all.contains("::2", at));
    }

    #[test]
    fn an_entry_matches_only_before_it_expires() {
        let l = ListIndex::build(
            ListKind::Email,
            &[entry("a@x.io", Some("2026-06-01T00:00:00Z")), entry("b@x.io", None)],
        );
        assert!(l.contains("a@x.io", ts("2026-05-31T23:59:59Z")));
        assert!(!l.contains("a@x.io", ts("2026-06-01T00:00:00Z")), "not at the instant");
        assert!(!l.contains("a@x.io", ts("2026-06-02T00:00:00Z")));
        assert!(l.contains("b@x.io", ts("2099-01-01T00:00:00Z")));
        let ip = ListIndex::build(ListKind::Ip, &[entry("10.0.0.0/8", Some("2026-06-01T00:00:00Z"))]);
        assert!(ip.contains("10.1.1.1", ts("2026-05-01T00:00:00Z")));
        assert!(!ip.contains("10.1.1.1", ts("2026-06-01T00:00:00Z")));
    }

    #[test]
    fn a_value_listed_twice_keeps_the_later_expiry() {
        let l = ListIndex::build(
            ListKind::String,
            &[
                entry("v", Some("2026-01-02T00:00:00Z")),
                entry("v", None),
                entry("w", Some("2026-01-02T00:00:00Z")),
            ],
        );
        assert!(l.contains("v", ts("2030-01-01T00:00:00Z")));
        assert!(!l.contains("w", ts("2030-01-01T00:00:00Z")));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn email_and_country_lookups_ignore_case() {
        let at = ts(AT);
        let l = index(ListKind::Email, &["Fraud@Example.com"]);
        assert!(l.contains("FRAUD@example.COM", at));
        assert!(l.contains(" fraud@example.com", at));
        assert!(!l.contains("fraud@example.org", at));
        let c = index(ListKind::Country, &["ng"]);
        assert!(c.contains("NG", at) && c.contains("ng", at));
        let s = index(ListKind::String, &["Abc"]);
        assert!(
            s.contains("Abc", at) && !s.contains("abc", at),
            "strings compare exactly"
        );
    }

    #[test]
    fn stored_entries_of_the_wrong_kind_are_skipped_not_matched() {
        let l = index(ListKind::Bin, &["412345", "not-a-bin"]);
        assert_eq!((l.len(), l.skipped()), (1, 1));
        assert!(!l.contains("not-a-bin", ts(AT)));
    }

    #[test]
    fn maps_of_indexes_are_list_lookups() {
        let name = ListName::parse("blocked").unwrap();
        let mut m: HashMap<ListName, Arc<ListIndex>> = HashMap::new();
        m.insert(name.clone(), Arc::new(index(ListKind::Country, &["FR"])));
        assert_eq!(m.list(&name).map(|l| l.kind()), Some(ListKind::Country));
        assert!(m.list(&ListName::parse("other").unwrap()).is_none());
        let b: BTreeMap<_, _> = m.into_iter().collect();
        assert!(b.list(&name).is_some());
        assert!(NoLists.list(&name).is_none());
    }
}
