//! (issue 4) batch
