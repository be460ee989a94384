//! Verdict's shared crate, in layers that only point downwards:
//!
//! - [`domain`]: ids, money, time, transactions, features, models, the policy, metrics. Pure: no
//!   AWS SDK, no async runtime.
//! - [`ports`]: the small traits the services need from storage, objects and the platform; one
//!   in-memory fake of each ([`ports::in_memory`]) and one contract suite of each ([`ports::contract`]).
//! - [`app`]: the services (scoring, …), generic over the ports.
//! - [`adapters`]: the ports on DynamoDB, S3 and Lambda, behind the default `aws` feature.
//! - [`offline`]: the handbook simulator and protocol, for the CLI and the tests.

#[cfg(feature = "aws")]
pub mod adapters;
pub mod app;
pub mod domain;
pub mod offline;
pub mod ports;

pub use domain::features::{EntityAggregate, FeatureVector, FEATURE_COUNT};
pub use domain::model::ModelArtifact;
pub use domain::{CustomerId, Label, Money, TerminalId, Transaction, TransactionId};
