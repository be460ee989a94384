//! (issue 4) registry
