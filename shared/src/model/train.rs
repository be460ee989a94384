//! Gradient-boosted tree training.
