//! The Fraud Detection Handbook's transaction simulator, re-implemented from the description in
//! DESIGN.md (the handbook's own code is GPL-3 and is not used here).
//!
//! Customers and terminals sit on a 100×100 grid; each customer pays at the terminals within radius
//! 5, a Poisson number of times a day, around noon. Three fraud scenarios then label (and, for the
//! third, inflate) some of those transactions.
//!
//! Every random draw comes from a ChaCha8 stream keyed by the seed and selected by what it is for
//! (a customer's profile, a customer's day, a day's compromises...). No stream is shared between two
//! pieces of work, so the output depends only on the config, never on the order the work is done in.

use crate::domain::{
    Currency, CustomerId, Label, LabelledTransaction, Money, TerminalId, Timestamp, Transaction, TransactionId,
};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};

pub use time::Date;

/// Side of the square grid customers and terminals live on.
const GRID_SIZE: f64 = 100.0;
/// A customer uses the terminals closer than this.
const RADIUS: f64 = 5.0;
const SECONDS_PER_DAY: i64 = 86_400;
/// Transaction times are Normal(noon, 20,000 s); draws outside the day are dropped.
const TIME_MEAN_S: f64 = 43_200.0;
const TIME_SD_S: f64 = 20_000.0;
/// Scenario 1: any amount above 220.00 is fraud.
const SCENARIO_1_THRESHOLD_MINOR: i64 = 22_000;
/// Scenario 2: terminals compromised per day, and for how many days.
const SCENARIO_2_TERMINALS_PER_DAY: usize = 2;
const SCENARIO_2_DAYS: u32 = 28;
/// Scenario 3: customers compromised per day, for how many days, and the amount multiplier.
const SCENARIO_3_CUSTOMERS_PER_DAY: usize = 3;
const SCENARIO_3_DAYS: u32 = 14;
const SCENARIO_3_FACTOR: i64 = 5;
/// Money's upper bound; scenario 3 can compound, so multiplied amounts are clamped to it.
const MAX_MINOR: i64 = 1_000_000_000_000_000;
/// Days are packed into 24 bits of a stream id.
const MAX_DAYS: u32 = (1 << 24) - 1;

/// What to simulate. `Default` is the handbook's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    pub customers: usize,
    pub terminals: usize,
    pub days: u32,
    /// The first simulated day (UTC).
    pub start: Date,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            customers: 5_000,
            terminals: 10_000,
            days: 183,
            start: time::macros::date!(2018 - 04 - 01),
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("{field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
}

/// Parses a `YYYY-MM-DD` date, such as the `--start` argument.
pub fn parse_date(raw: &str) -> Result<Date, SimError> {
    Date::parse(raw, time::macros::format_description!("[year]-[month]-[day]")).map_err(|e| SimError::InvalidConfig {
        field: "start",
        reason: format!("{raw:?} is not a YYYY-MM-DD date ({e})"),
    })
}

/// Counts of a simulation's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimSummary {
    pub transactions: u64,
    pub frauds: u64,
    /// Frauds by the scenario that labelled them last; index 0 is unused.
    pub by_scenario: [u64; 4],
}

impl SimSummary {
    pub fn fraud_rate(&self) -> f64 {
        if self.transactions == 0 {
            0.0
        } else {
            self.frauds as f64 / self.transactions as f64
        }
    }
}

/// Simulates `cfg` and returns every transaction with its label, sorted by time (ties broken by
/// customer, then by the order the customer made them) and numbered in that order.
///
/// `progress(done, total)` is called as the work advances.
pub fn simulate(cfg: &SimConfig, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<LabelledTransaction>, SimError> {
    Ok(Simulation::run(cfg, progress)?.iter().collect())
}

/// A finished simulation in a compact form (about 40 bytes a transaction), to stream the
/// transactions out without holding them all as [`LabelledTransaction`]s.
pub struct Simulation {
    start_unix: i64,
    txs: Vec<RawTx>,
    customer_ids: Vec<CustomerId>,
    terminal_ids: Vec<TerminalId>,
    tx_id_width: usize,
}

/// One generated transaction before it becomes a domain value.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RawTx {
    /// Seconds since the start of day 0.
    secs: i64,
    amount_minor: i64,
    customer: u32,
    terminal: u32,
    day: u32,
    /// Its rank among its customer's transactions of that day, for a stable tie-break.
    seq: u32,
    fraud: bool,
    scenario: u8,
}

impl Simulation {
    pub fn run(cfg: &SimConfig, progress: &mut dyn FnMut(u64, u64)) -> Result<Self, SimError> {
        let start_unix = check(cfg)?;
        let key = ChaCha8Rng::seed_from_u64(cfg.seed).get_seed();
        let total = cfg.customers as u64 + u64::from(cfg.days);

        let terminals: Vec<(f64, f64)> = (0..cfg.terminals as u32)
            .map(|t| {
                let mut rng = stream(&key, Purpose::Terminal, t, 0);
                (rng.gen_range(0.0..GRID_SIZE), rng.gen_range(0.0..GRID_SIZE))
            })
            .collect();
        let grid = TerminalGrid::new(&terminals);

        let mut txs = Vec::new();
        let mut nearby = Vec::new();
        for c in 0..cfg.customers as u32 {
            let profile = CustomerProfile::draw(&mut stream(&key, Purpose::Customer, c, 0));
            grid.within_radius(profile.x, profile.y, &terminals, &mut nearby);
            generate_customer(&key, c, &profile, &nearby, cfg.days, &mut txs);
            progress(u64::from(c) + 1, total);
        }

        // Unique key: a customer's two transactions at the same second differ by `seq`.
        txs.sort_unstable_by_key(|t| (t.secs, t.customer, t.seq));

        scenario_1(&mut txs);
        let compromised_terminals = (0..cfg.days)
            .map(|d| {
                draw_distinct(
                    &mut stream(&key, Purpose::Scenario2, 0, d),
                    cfg.terminals,
                    SCENARIO_2_TERMINALS_PER_DAY,
                )
            })
            .collect::<Vec<_>>();
        scenario_2(&mut txs, cfg.terminals, &compromised_terminals);
        scenario_3(
            &mut txs,
            cfg.customers,
            cfg.days,
            |d| stream(&key, Purpose::Scenario3, 0, d),
            &mut |d| progress(cfg.customers as u64 + u64::from(d) + 1, total),
        );

        Ok(Self {
            start_unix,
            tx_id_width: width(txs.len(), 8),
            customer_ids: ids(cfg.customers, "c", CustomerId::parse),
            terminal_ids: ids(cfg.terminals, "t", TerminalId::parse),
            txs,
        })
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn summary(&self) -> SimSummary {
        let mut s = SimSummary {
            transactions: self.txs.len() as u64,
            ..SimSummary::default()
        };
        for t in self.txs.iter().filter(|t| t.fraud) {
            s.frauds += 1;
            s.by_scenario[usize::from(t.scenario.min(3))] += 1;
        }
        s
    }

    /// The transactions in time order, numbered `tx-00000001`, `tx-00000002`...
    pub fn iter(&self) -> impl ExactSizeIterator<Item = LabelledTransaction> + '_ {
        self.txs.iter().enumerate().map(move |(i, t)| {
            let id = format!("tx-{:0w$}", i + 1, w = self.tx_id_width);
            LabelledTransaction {
                tx: Transaction {
                    // Digits and "tx-" only, far below the id length limit.
                    id: TransactionId::parse(&id).expect("generated ids are valid"),
                    // `check` proved every second of the simulated range is a valid timestamp.
                    occurred_at: Timestamp::from_unix(self.start_unix + t.secs).expect("checked in Simulation::run"),
                    // Amounts are drawn non-negative and clamped to Money's bound.
                    amount: Money::new(t.amount_minor, Currency::EUR).expect("amounts are in Money's range"),
                    customer_id: self.customer_ids[t.customer as usize].clone(),
                    terminal_id: self.terminal_ids[t.terminal as usize].clone(),
                },
                label: Some(Label {
                    fraud: t.fraud,
                    scenario: t.scenario,
                }),
                extras: None,
            }
        })
    }
}

/// Refuses configs the simulator cannot represent, and returns the start as a Unix time.
fn check(cfg: &SimConfig) -> Result<i64, SimError> {
    let invalid = |field, reason: String| SimError::InvalidConfig { field, reason };
    if cfg.customers > u32::MAX as usize {
        return Err(invalid("customers", format!("must be at most {}", u32::MAX)));
    }
    if cfg.terminals > u32::MAX as usize {
        return Err(invalid("terminals", format!("must be at most {}", u32::MAX)));
    }
    if cfg.days > MAX_DAYS {
        return Err(invalid("days", format!("must be at most {MAX_DAYS}")));
    }
    let start = cfg.start.midnight().assume_utc().unix_timestamp();
    let end = start + i64::from(cfg.days) * SECONDS_PER_DAY;
    if Timestamp::from_unix(start).is_err() || Timestamp::from_unix(end).is_err() {
        return Err(invalid(
            "days",
            format!("{} days from {} run past the year 9999", cfg.days, cfg.start),
        ));
    }
    Ok(start)
}

/// What a random stream is used for; part of the stream id.
#[derive(Clone, Copy)]
enum Purpose {
    Customer = 1,
    Terminal = 2,
    CustomerDay = 3,
    Scenario2 = 4,
    Scenario3 = 5,
}

/// The independent stream for (`purpose`, `entity`, `day`): ChaCha's 64-bit stream id holds all
/// three, so no two pieces of work ever draw from the same stream.
fn stream(key: &[u8; 32], purpose: Purpose, entity: u32, day: u32) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(*key);
    rng.set_stream((purpose as u64) << 56 | u64::from(entity) << 24 | u64::from(day & MAX_DAYS));
    rng
}

struct CustomerProfile {
    x: f64,
    y: f64,
    mean_amount: f64,
    std_amount: f64,
    mean_tx_per_day: f64,
}

impl CustomerProfile {
    fn draw(rng: &mut ChaCha8Rng) -> Self {
        let x = rng.gen_range(0.0..GRID_SIZE);
        let y = rng.gen_range(0.0..GRID_SIZE);
        let mean_amount = rng.gen_range(5.0..100.0);
        let mean_tx_per_day = rng.gen_range(0.0..4.0);
        Self {
            x,
            y,
            mean_amount,
            std_amount: mean_amount / 2.0,
            mean_tx_per_day,
        }
    }
}

/// Terminals bucketed in RADIUS-sized cells, so a customer only looks at the 3×3 cells around it.
struct TerminalGrid {
    cells: Vec<Vec<u32>>,
    side: usize,
}

impl TerminalGrid {
    fn new(terminals: &[(f64, f64)]) -> Self {
        let side = (GRID_SIZE / RADIUS).ceil() as usize;
        let mut cells = vec![Vec::new(); side * side];
        for (i, &(x, y)) in terminals.iter().enumerate() {
            cells[Self::cell(y, side) * side + Self::cell(x, side)].push(i as u32);
        }
        Self { cells, side }
    }

    fn cell(v: f64, side: usize) -> usize {
        ((v / RADIUS) as usize).min(side - 1)
    }

    /// The terminals strictly closer than RADIUS to (x, y), in increasing index order.
    fn within_radius(&self, x: f64, y: f64, terminals: &[(f64, f64)], out: &mut Vec<u32>) {
        out.clear();
        let (cx, cy) = (Self::cell(x, self.side), Self::cell(y, self.side));
        for gy in cy.saturating_sub(1)..=(cy + 1).min(self.side - 1) {
            for gx in cx.saturating_sub(1)..=(cx + 1).min(self.side - 1) {
                out.extend(self.cells[gy * self.side + gx].iter().copied().filter(|&t| {
                    let (tx, ty) = terminals[t as usize];
                    (tx - x).powi(2) + (ty - y).powi(2) < RADIUS * RADIUS
                }));
            }
        }
        // The choice of terminal indexes this list, so its order must not depend on the cells.
        out.sort_unstable();
    }
}

/// Appends one customer's transactions over all days. A customer with no terminal in reach
/// makes none.
fn generate_customer(key: &[u8; 32], c: u32, p: &CustomerProfile, terminals: &[u32], days: u32, out: &mut Vec<RawTx>) {
    if terminals.is_empty() {
        return;
    }
    // Poisson::new refuses a zero rate (a U(0,4) draw can be 0.0): such a customer never pays.
    let Ok(per_day) = Poisson::new(p.mean_tx_per_day) else {
        return;
    };
    for day in 0..days {
        let mut rng = stream(key, Purpose::CustomerDay, c, day);
        let n: f64 = per_day.sample(&mut rng);
        for seq in 0..n as u32 {
            let z: f64 = rng.sample(StandardNormal);
            // `as` truncates like the handbook's int(); out-of-day times are dropped, not redrawn.
            let secs = (TIME_MEAN_S + TIME_SD_S * z) as i64;
            if secs <= 0 || secs >= SECONDS_PER_DAY {
                continue;
            }
            let z: f64 = rng.sample(StandardNormal);
            let mut amount = p.mean_amount + p.std_amount * z;
            if amount < 0.0 {
                amount = rng.gen_range(0.0..2.0 * p.mean_amount);
            }
            let terminal = terminals[rng.gen_range(0..terminals.len())];
            out.push(RawTx {
                secs: i64::from(day) * SECONDS_PER_DAY + secs,
                amount_minor: (amount * 100.0).round() as i64,
                customer: c,
                terminal,
                day,
                seq,
                fraud: false,
                scenario: 0,
            });
        }
    }
}

/// `k` distinct indices below `n` (fewer if `n < k`), in the order they were drawn.
fn draw_distinct(rng: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<usize> {
    index::sample(rng, n, k.min(n)).into_vec()
}

fn mark(t: &mut RawTx, scenario: u8) {
    t.fraud = true;
    t.scenario = scenario;
}

/// Scenario 1: every amount above 220 is fraud.
fn scenario_1(txs: &mut [RawTx]) {
    for t in txs.iter_mut().filter(|t| t.amount_minor > SCENARIO_1_THRESHOLD_MINOR) {
        mark(t, 1);
    }
}

/// Scenario 2: `compromised[d]` are the terminals compromised on day `d`; all their
/// transactions from day `d` to `d + 27` are fraud.
fn scenario_2(txs: &mut [RawTx], terminals: usize, compromised: &[Vec<usize>]) {
    let mut since: Vec<Vec<u32>> = vec![Vec::new(); terminals];
    for (d, ts) in compromised.iter().enumerate() {
        for &t in ts {
            since[t].push(d as u32);
        }
    }
    for t in txs.iter_mut() {
        if since[t.terminal as usize]
            .iter()
            .any(|&d| d <= t.day && t.day < d + SCENARIO_2_DAYS)
        {
            mark(t, 2);
        }
    }
}

/// Scenario 3: each day, three customers are compromised; of each one's transactions in the next
/// 14 days (that day included), a third (rounded down) get their amount multiplied by 5 and are
/// fraud. Days are applied in order, so a transaction picked twice is multiplied twice.
/// `txs` must be in time order. `rng_for(d)` gives day `d`'s stream; `done(d)` reports progress.
fn scenario_3(
    txs: &mut [RawTx],
    customers: usize,
    days: u32,
    rng_for: impl Fn(u32) -> ChaCha8Rng,
    done: &mut dyn FnMut(u32),
) {
    // Draw every day's customers first (each day's stream then goes on to pick the transactions),
    // so the history below only indexes the customers that will need it.
    let picks: Vec<(u32, Vec<usize>, ChaCha8Rng)> = (0..days)
        .map(|d| {
            let mut rng = rng_for(d);
            (d, draw_distinct(&mut rng, customers, SCENARIO_3_CUSTOMERS_PER_DAY), rng)
        })
        .collect();
    // Each compromised customer's transactions, in time order.
    let mut history: std::collections::HashMap<u32, Vec<usize>> = picks
        .iter()
        .flat_map(|(_, cs, _)| cs.iter().map(|&c| (c as u32, Vec::new())))
        .collect();
    for (i, t) in txs.iter().enumerate() {
        if let Some(h) = history.get_mut(&t.customer) {
            h.push(i);
        }
    }
    for (d, cs, mut rng) in picks {
        for c in cs {
            // Every picked customer was given an entry above.
            let h = &history[&(c as u32)];
            let from = h.partition_point(|&i| txs[i].day < d);
            let to = h.partition_point(|&i| txs[i].day < d + SCENARIO_3_DAYS);
            let window = &h[from..to];
            for j in draw_distinct(&mut rng, window.len(), window.len() / 3) {
                let t = &mut txs[window[j]];
                t.amount_minor = t.amount_minor.saturating_mul(SCENARIO_3_FACTOR).min(MAX_MINOR);
                mark(t, 3);
            }
        }
        done(d);
    }
}

/// Digits needed to number `n` things from 1, at least `min`.
fn width(n: usize, min: usize) -> usize {
    n.to_string().len().max(min)
}

fn ids<T>(n: usize, prefix: &str, parse: fn(&str) -> Result<T, crate::domain::DomainError>) -> Vec<T> {
    let w = width(n, 5);
    // A letter, a dash and digits: always a valid id.
    (1..=n)
        .map(|i| parse(&format!("{prefix}-{i:0w$}")).expect("generated ids are valid"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(secs: i64, customer: u32, terminal: u32, amount_minor: i64) -> RawTx {
        RawTx {
            secs,
            amount_minor,
            customer,
            terminal,
            day: (secs / SECONDS_PER_DAY) as u32,
            seq: 0,
            fraud: false,
            scenario: 0,
        }
    }

    fn day(d: i64) -> i64 {
        d * SECONDS_PER_DAY + 3600
    }

    #[test]
    fn grid_finds_exactly_the_terminals_a_scan_finds() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let terminals: Vec<(f64, f64)> = (0..3000)
            .map(|_| (rng.gen_range(0.0..GRID_SIZE), rng.gen_range(0.0..GRID_SIZE)))
            .collect();
        let grid = TerminalGrid::new(&terminals);
        let mut found = Vec::new();
        let mut total = 0;
        for _ in 0..300 {
            let (x, y) = (rng.gen_range(0.0..GRID_SIZE), rng.gen_range(0.0..GRID_SIZE));
            grid.within_radius(x, y, &terminals, &mut found);
            let scan: Vec<u32> = (0..terminals.len() as u32)
                .filter(|&t| {
                    let (tx, ty) = terminals[t as usize];
                    ((tx - x).powi(2) + (ty - y).powi(2)).sqrt() < RADIUS
                })
                .collect();
            assert_eq!(found, scan);
            total += scan.len();
        }
        // 3000 terminals on 10^4 units², π·25 each: about 23.6 in reach on average.
        assert!((15..35).contains(&(total / 300)), "{}", total / 300);
    }

    #[test]
    fn scenario_1_marks_amounts_above_220_only() {
        let mut txs = vec![raw(day(0), 0, 0, 22_000), raw(day(0), 0, 0, 22_001)];
        scenario_1(&mut txs);
        assert_eq!((txs[0].fraud, txs[0].scenario), (false, 0));
        assert_eq!((txs[1].fraud, txs[1].scenario), (true, 1));
    }

    #[test]
    fn scenario_2_covers_28_days_from_the_compromise() {
        let mut txs: Vec<RawTx> = (0..40).map(|d| raw(day(d), 0, 1, 100)).collect();
        txs.push(raw(day(5), 0, 0, 100));
        let mut compromised = vec![Vec::new(); 40];
        compromised[3] = vec![1];
        scenario_2(&mut txs, 2, &compromised);
        let fraud_days: Vec<u32> = txs.iter().filter(|t| t.fraud).map(|t| t.day).collect();
        assert_eq!(fraud_days, (3..31).collect::<Vec<_>>());
        assert!(txs
            .iter()
            .filter(|t| t.fraud)
            .all(|t| t.scenario == 2 && t.terminal == 1));
    }

    #[test]
    fn scenario_3_multiplies_a_third_of_the_next_14_days() {
        // Customer 0: 3 transactions a day for 30 days, all of amount 1000.
        let mut txs: Vec<RawTx> = (0..30)
            .flat_map(|d| (0..3).map(move |k| raw(day(d) + k, 0, 0, 1000)))
            .collect();
        // One customer only, so it is the one compromised every day; count day 0's effect alone.
        let mut only_day_0 = txs.clone();
        scenario_3(
            &mut only_day_0,
            1,
            1,
            |d| ChaCha8Rng::seed_from_u64(u64::from(d)),
            &mut |_| {},
        );
        let hit: Vec<&RawTx> = only_day_0.iter().filter(|t| t.fraud).collect();
        assert_eq!(hit.len(), 14, "a third of 42 transactions");
        assert!(hit
            .iter()
            .all(|t| t.day < 14 && t.amount_minor == 5000 && t.scenario == 3));
        assert!(only_day_0.iter().filter(|t| !t.fraud).all(|t| t.amount_minor == 1000));

        // Over 30 days the windows overlap, and a transaction picked twice is multiplied twice.
        scenario_3(
            &mut txs,
            1,
            30,
            |d| ChaCha8Rng::seed_from_u64(u64::from(d)),
            &mut |_| {},
        );
        let mut multiplied_twice = 0;
        for t in &txs {
            let mut a = t.amount_minor;
            let mut k = 0;
            while a > 1000 && a % 5 == 0 {
                a /= 5;
                k += 1;
            }
            assert_eq!(a, 1000, "amount {} is not 1000·5^k", t.amount_minor);
            assert_eq!(t.fraud, k > 0);
            multiplied_twice += usize::from(k > 1);
        }
        assert!(multiplied_twice > 0);
    }

    #[test]
    fn config_errors_name_the_field() {
        let cfg = SimConfig {
            start: parse_date("9999-12-01").unwrap(),
            ..SimConfig::default()
        };
        let err = Simulation::run(&cfg, &mut |_, _| {}).err().unwrap();
        assert_eq!(err.to_string(), "days: 183 days from 9999-12-01 run past the year 9999");
        assert_eq!(
            parse_date("2018-4-1x").unwrap_err().to_string().split(" (").next(),
            Some("start: \"2018-4-1x\" is not a YYYY-MM-DD date")
        );
    }

    #[test]
    fn empty_configs_give_empty_runs() {
        for (customers, terminals, days) in [(0, 10, 5), (10, 0, 5), (10, 10, 0), (1, 1, 3)] {
            let cfg = SimConfig {
                customers,
                terminals,
                days,
                ..SimConfig::default()
            };
            let sim = Simulation::run(&cfg, &mut |_, _| {}).unwrap();
            assert_eq!(sim.iter().count(), sim.len());
            if customers == 0 || terminals == 0 || days == 0 {
                assert!(sim.is_empty());
            }
        }
    }

    #[test]
    fn streams_are_independent_of_each_other() {
        let key = ChaCha8Rng::seed_from_u64(42).get_seed();
        let a: u64 = stream(&key, Purpose::CustomerDay, 1, 2).gen();
        let b: u64 = stream(&key, Purpose::CustomerDay, 2, 1).gen();
        let c: u64 = stream(&key, Purpose::Customer, 1, 2).gen();
        assert!(a != b && a != c && b != c);
        assert_eq!(a, stream(&key, Purpose::CustomerDay, 1, 2).gen::<u64>());
    }

    #[test]
    fn small_run_is_sorted_numbered_and_in_range() {
        let cfg = SimConfig {
            customers: 50,
            terminals: 100,
            days: 10,
            ..SimConfig::default()
        };
        let mut calls = Vec::new();
        let sim = Simulation::run(&cfg, &mut |d, t| calls.push((d, t))).unwrap();
        assert_eq!(calls.last(), Some(&(60, 60)));
        let txs: Vec<_> = sim.iter().collect();
        assert_eq!(txs.len(), sim.len());
        assert!(!txs.is_empty());
        assert_eq!(txs[0].tx.id.as_str(), "tx-00000001");
        let start = cfg.start.midnight().assume_utc().unix_timestamp();
        for w in txs.windows(2) {
            assert!(w[0].tx.occurred_at <= w[1].tx.occurred_at);
        }
        for t in &txs {
            let s = t.tx.occurred_at.unix() - start;
            assert!((0..10 * SECONDS_PER_DAY).contains(&s) && s % SECONDS_PER_DAY != 0);
            assert!(t.tx.customer_id.as_str().len() == 7 && t.tx.customer_id.as_str().starts_with("c-000"));
        }
    }
}
