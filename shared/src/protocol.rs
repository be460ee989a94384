//! The handbook's train / delay / test protocol.
