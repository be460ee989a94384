//! What the handler reads and writes: decisions ([`DecisionStore`]) and the model registry
//! ([`ModelRegistry`]) and rules and lists ([`RulesAdmin`]), on one store.

use verdict::ports::registry::ModelRegistry;
use verdict::ports::rules::{RulesAdmin, TenantPolicyRead};
use verdict::ports::{DecisionStore, DecisionWindow};

/// Everything the handler reads and writes.
pub trait ApiStore: DecisionStore + DecisionWindow + ModelRegistry + RulesAdmin + TenantPolicyRead {}

impl<T: DecisionStore + DecisionWindow + ModelRegistry + RulesAdmin + TenantPolicyRead> ApiStore for T {}
