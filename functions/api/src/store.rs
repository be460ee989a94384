//! What the handler reads and writes: decisions ([`DecisionStore`]) and the model registry
//! ([`ModelRegistry`]), on one store.

use verdict::ports::registry::ModelRegistry;
use verdict::ports::DecisionStore;

/// Everything the handler reads and writes.
pub trait ApiStore: DecisionStore + ModelRegistry {}

impl<T: DecisionStore + ModelRegistry> ApiStore for T {}
