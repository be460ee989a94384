//! (issue 4) labels
