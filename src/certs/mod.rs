//! Bucket CA and per-job leaf certificates (rcgen); pure functions, no database access.
