//! Owns the crate's error type. Every failure a caller can see is a variant here, with a
//! message that names the row, column or table involved and says what to do next.
//! It must never hide an SQLite error behind a string: the original error stays the source.

/// Everything that can go wrong while installing, appending to, reading or verifying a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite refused a statement (locked database, I/O error, a trigger refusing a write...).
    #[error("journal storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// Optimistic concurrency check failed: somebody appended after the caller read the head.
    #[error(
        "journal head moved: the append expected head {expected} but the journal is at {actual}; \
         another writer appended first, so roll back, re-read the state and decide again"
    )]
    Conflict {
        /// The head the caller based its decision on.
        expected: u64,
        /// The head found inside the caller's transaction.
        actual: u64,
    },

    /// A payload could not be encoded, or stored bytes could not be decoded into the asked type.
    #[error("journal payload codec: {0}")]
    Codec(String),

    /// A row chained by another copy of the journal does not extend this one.
    #[error(
        "journal event {seq} does not extend this journal: {problem}; the two copies of the \
         journal have diverged (or the row was altered in transit), so it was not stored"
    )]
    BrokenLink {
        /// Sequence number of the row that does not link.
        seq: u64,
        /// What does not match.
        problem: String,
    },

    /// A stored row cannot be turned into a [`crate::StoredEvent`] (wrong column type, bad length,
    /// out-of-range value). This only happens when the database was edited behind the crate's back.
    #[error(
        "journal row {seq}: column `{column}` {problem}; the row was altered outside this crate, \
         run `verify` to locate the first damaged row"
    )]
    MalformedRow {
        /// The `seq` column of the offending row, as stored.
        seq: i64,
        /// Name of the offending column.
        column: &'static str,
        /// What is wrong with the stored value.
        problem: String,
    },

    /// A table named `journal` exists but was not created by this crate.
    #[error(
        "table `journal` exists but has columns ({found}), not the journal layout ({expected}); \
         point the journal at a database (or schema) where `journal` is free or was created by `journal::install`"
    )]
    ForeignTable {
        /// Columns found in the existing table, comma separated.
        found: String,
        /// Columns the crate expects, comma separated.
        expected: String,
    },

    /// The next sequence number would not fit in SQLite's 64-bit signed rowid.
    #[error("journal sequence numbers exhausted: head {head} plus {count} events exceeds 2^63-1")]
    SequenceExhausted {
        /// Head at the time of the append.
        head: u64,
        /// Number of events the caller tried to append.
        count: usize,
    },

    /// A textual anchor (see [`crate::Anchor`]) could not be parsed.
    #[error("journal anchor `{text}` is not `<seq>:<64 hex digits>`: {problem}")]
    BadAnchor {
        /// The text that was given.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
}
