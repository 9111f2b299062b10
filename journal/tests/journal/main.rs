//! Specification of the journal crate, exercised against real SQLite files.
//!
//! Property-test failures are persisted by proptest's default policy, next to the sources in
//! `journal/proptest-regressions/`; commit any file that appears there.

mod appending;
mod concurrency;
mod copying;
mod fixture;
mod installing;
mod reading;
mod tampering;
