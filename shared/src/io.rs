//! Reading and writing transaction files (CSV and NDJSON).
